// Multidimensional model: a root group with one MDArray per variable, in the
// style of GDAL's Zarr driver (a GDALGroup/GDALMDArray pair whose IRead
// gathers every chunk a request needs, fetches them together and copies
// decoded chunks into the caller's buffer).
//
// Overviews: each level > 0 of a variable is returned by
// GDALMDArray::GetOverview(i) (GDAL >= 3.13), not listed as a named array.
// That is what GDAL's classic bridge (AsClassicDataset) turns into raster
// overviews, so gdalinfo/gdal_translate -ovr/gdalwarp use the index's own
// levels, and the group keeps one array per variable as the spec has.
#include "cri.h"

#include "cpl_time.h"
#include "ogr_spatialref.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <list>
#include <thread>

namespace cri
{

namespace
{

/** Decoded chunks (native order, full chunk shape), least recently used
 * dropped first, bounded in bytes. */
class ChunkCache
{
  public:
    using Buffer = std::shared_ptr<const std::vector<GByte>>;
    struct Key
    {
        std::string array;
        int level;
        Coords c;
        bool operator==(const Key &o) const
        {
            return level == o.level && array == o.array && c == o.c;
        }
    };
    struct KeyHash
    {
        size_t operator()(const Key &k) const
        {
            return CoordsHash()(k.c) ^ std::hash<std::string>()(k.array) ^
                   static_cast<size_t>(k.level * 7919);
        }
    };

    explicit ChunkCache(size_t maxBytes) : m_max(maxBytes)
    {
    }

    Buffer Get(const Key &k)
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        auto it = m_map.find(k);
        if (it == m_map.end())
            return nullptr;
        m_lru.splice(m_lru.begin(), m_lru, it->second);
        return it->second->second;
    }

    void Put(const Key &k, Buffer b)
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        auto it = m_map.find(k);
        if (it != m_map.end())
        {
            m_bytes -= it->second->second->size();
            m_lru.erase(it->second);
            m_map.erase(it);
        }
        m_bytes += b->size();
        m_lru.emplace_front(k, std::move(b));
        m_map[k] = m_lru.begin();
        while (m_bytes > m_max && m_lru.size() > 1)
        {
            auto &last = m_lru.back();
            m_bytes -= last.second->size();
            m_map.erase(last.first);
            m_lru.pop_back();
        }
    }

  private:
    std::mutex m_mutex{};
    size_t m_max;
    size_t m_bytes = 0;
    std::list<std::pair<Key, Buffer>> m_lru{};
    std::unordered_map<Key, std::list<std::pair<Key, Buffer>>::iterator,
                       KeyHash>
        m_map{};
};

}  // namespace

/** What every object of one opened index shares. */
struct SharedResource
{
    std::shared_ptr<Index> index{};
    std::shared_ptr<ChunkTable> table{};
    std::unique_ptr<ChunkCache> cache{};
    std::weak_ptr<GDALGroup> root{};
};

namespace
{

std::string DimTypeDirection(const Dimension &d, std::string &dir)
{
    dir.clear();
    if (d.type == "HORIZONTAL_X")
        dir = "EAST";
    else if (d.type == "HORIZONTAL_Y")
        dir = "NORTH";
    else if (d.type == "VERTICAL")
        dir = d.json.GetString("positive") == "down" ? "DOWN" : "UP";
    else if (d.type == "TEMPORAL")
        dir = "FUTURE";
    return d.type;
}

/** IRead of a 1-D list of doubles held in memory (a coordinate array or
 * a numeric attribute). */
bool ReadDoubles(const std::vector<double> &values, const GUInt64 *start,
                 const size_t *count, const GInt64 *step,
                 const GPtrDiff_t *stride, const GDALExtendedDataType &bufDT,
                 void *dst)
{
    static const GDALExtendedDataType dt =
        GDALExtendedDataType::Create(GDT_Float64);
    GByte *out = static_cast<GByte *>(dst);
    const auto sz = static_cast<GPtrDiff_t>(bufDT.GetSize());
    for (size_t i = 0; i < count[0]; ++i)
    {
        const double v = values[static_cast<size_t>(
            static_cast<GInt64>(start[0]) + static_cast<GInt64>(i) * step[0])];
        GDALExtendedDataType::CopyValue(
            &v, dt, out + static_cast<GPtrDiff_t>(i) * stride[0] * sz, bufDT);
    }
    return true;
}

/** What the driver's arrays share: read-only, in the index file, with
 * fixed dimensions and data type. (GDALAbstractMDArray is a virtual base:
 * the final class constructs it.) */
class ReadOnlyArray : public GDALMDArray
{
  protected:
    std::vector<std::shared_ptr<GDALDimension>> m_dims;
    GDALExtendedDataType m_dt;
    std::string m_osFilename;

    ReadOnlyArray(const std::string &parent, const std::string &name,
                  std::vector<std::shared_ptr<GDALDimension>> dims,
                  GDALDataType eDT, const std::string &filename)
        : GDALAbstractMDArray(parent, name), GDALMDArray(parent, name),
          m_dims(std::move(dims)), m_dt(GDALExtendedDataType::Create(eDT)),
          m_osFilename(filename)
    {
    }

  public:
    bool IsWritable() const override
    {
        return false;
    }
    const std::string &GetFilename() const override
    {
        return m_osFilename;
    }
    const std::vector<std::shared_ptr<GDALDimension>> &
    GetDimensions() const override
    {
        return m_dims;
    }
    const GDALExtendedDataType &GetDataType() const override
    {
        return m_dt;
    }
};

/** A 1-D array of double values held in memory (coordinates from the
 * `values` of a dimension). */
class ValuesArray final : public ReadOnlyArray
{
    std::vector<double> m_values;
    std::vector<std::shared_ptr<GDALAttribute>> m_attrs{};
    std::string m_osUnit{};

  protected:
    ValuesArray(const std::string &parent, const std::string &name,
                const std::shared_ptr<GDALDimension> &dim,
                std::vector<double> values, const std::string &filename)
        : GDALAbstractMDArray(parent, name),
          ReadOnlyArray(parent, name, {dim}, GDT_Float64, filename),
          m_values(std::move(values))
    {
    }

    bool IRead(const GUInt64 *start, const size_t *count, const GInt64 *step,
               const GPtrDiff_t *stride, const GDALExtendedDataType &bufDT,
               void *dst) const override
    {
        return ReadDoubles(m_values, start, count, step, stride, bufDT, dst);
    }

  public:
    static std::shared_ptr<ValuesArray>
    Create(const std::string &parent, const std::string &name,
           const std::shared_ptr<GDALDimension> &dim, std::vector<double> values,
           const std::string &filename)
    {
        auto a = std::shared_ptr<ValuesArray>(
            new ValuesArray(parent, name, dim, std::move(values), filename));
        a->SetSelf(a);
        return a;
    }
    void AddAttribute(std::shared_ptr<GDALAttribute> a)
    {
        m_attrs.push_back(std::move(a));
    }
    void SetUnitStr(const std::string &u)
    {
        m_osUnit = u;
    }
    const std::string &GetUnit() const override
    {
        return m_osUnit;
    }
    std::vector<std::shared_ptr<GDALAttribute>>
    GetAttributes(CSLConstList) const override
    {
        return m_attrs;
    }
};

/** A numeric attribute holding a list of doubles. */
class DoublesAttribute final : public GDALAttribute
{
    std::vector<double> m_values;
    std::vector<std::shared_ptr<GDALDimension>> m_dims;
    GDALExtendedDataType m_dt = GDALExtendedDataType::Create(GDT_Float64);

  protected:
    bool IRead(const GUInt64 *start, const size_t *count, const GInt64 *step,
               const GPtrDiff_t *stride, const GDALExtendedDataType &bufDT,
               void *dst) const override
    {
        return ReadDoubles(m_values, start, count, step, stride, bufDT, dst);
    }

  public:
    DoublesAttribute(const std::string &parent, const std::string &name,
                     std::vector<double> values)
        : GDALAbstractMDArray(parent, name), GDALAttribute(parent, name),
          m_values(std::move(values))
    {
        m_dims.push_back(std::make_shared<GDALDimension>(
            std::string(), "dim0", std::string(), std::string(),
            m_values.size()));
    }
    const std::vector<std::shared_ptr<GDALDimension>> &
    GetDimensions() const override
    {
        return m_dims;
    }
    const GDALExtendedDataType &GetDataType() const override
    {
        return m_dt;
    }
};

/** GDAL attributes from a JSON object of CF-style attributes. */
std::vector<std::shared_ptr<GDALAttribute>>
AttributesFromJSON(const std::string &parent, const CPLJSONObject &obj,
                   const std::set<std::string> &skip)
{
    std::vector<std::shared_ptr<GDALAttribute>> out;
    if (!obj.IsValid() || obj.GetType() != CPLJSONObject::Type::Object)
        return out;
    for (const auto &child : obj.GetChildren())
    {
        const std::string name = child.GetName();
        if (skip.count(name))
            continue;
        switch (child.GetType())
        {
            case CPLJSONObject::Type::String:
                out.push_back(std::make_shared<GDALAttributeString>(
                    parent, name, child.ToString()));
                break;
            case CPLJSONObject::Type::Integer:
                out.push_back(std::make_shared<GDALAttributeNumeric>(
                    parent, name, child.ToInteger()));
                break;
            case CPLJSONObject::Type::Long:
            case CPLJSONObject::Type::Double:
                out.push_back(std::make_shared<GDALAttributeNumeric>(
                    parent, name, child.ToDouble()));
                break;
            case CPLJSONObject::Type::Boolean:
                out.push_back(std::make_shared<GDALAttributeString>(
                    parent, name, child.ToBool() ? "true" : "false"));
                break;
            case CPLJSONObject::Type::Array:
            {
                const CPLJSONArray arr = child.ToArray();
                bool allNum = arr.Size() > 0;
                std::vector<double> v;
                for (int i = 0; i < arr.Size() && allNum; ++i)
                {
                    const auto t = arr[i].GetType();
                    allNum = t == CPLJSONObject::Type::Integer ||
                             t == CPLJSONObject::Type::Long ||
                             t == CPLJSONObject::Type::Double;
                    if (allNum)
                        v.push_back(arr[i].ToDouble());
                }
                if (allNum)
                    out.push_back(std::make_shared<DoublesAttribute>(
                        parent, name, std::move(v)));
                else
                    out.push_back(std::make_shared<GDALAttributeString>(
                        parent, name,
                        child.Format(CPLJSONObject::PrettyFormat::Plain)));
                break;
            }
            case CPLJSONObject::Type::Object:
                out.push_back(std::make_shared<GDALAttributeString>(
                    parent, name,
                    child.Format(CPLJSONObject::PrettyFormat::Plain)));
                break;
            default:
                break;
        }
    }
    return out;
}

class CRIGroup;

/** One variable at one level, with some dimensions optionally pinned to an
 * index (classic mode: a time step). */
class CRIArray final : public ReadOnlyArray
{
    std::shared_ptr<SharedResource> m_res;
    std::shared_ptr<GDALGroup> m_root;  // kept alive for GetRootGroup()
    const Array &m_a;
    size_t m_iLevel;
    const Level &m_l;
    std::vector<int64_t> m_pinned;  // per array dim: -1 or the index
    std::vector<int> m_exposed;     // exposed dim -> array dim
    std::string m_osUnit;
    std::vector<GByte> m_nodata{};
    bool m_hasNodata = false;
    double m_scale = 1, m_offset = 0;
    bool m_hasScale = false, m_hasOffset = false;
    mutable std::shared_ptr<OGRSpatialReference> m_srs{};
    mutable bool m_srsDone = false;
    mutable std::mutex m_srsMutex{};
    std::vector<std::shared_ptr<GDALAttribute>> m_attrs;
    std::vector<std::vector<GByte>> m_fillChunk{};
    mutable CPLStringList m_structural{};

    size_t FullChunkBytes() const
    {
        size_t s = static_cast<size_t>(m_a.itemSize);
        for (auto c : m_l.chunk)
            s *= static_cast<size_t>(c);
        return s;
    }

  protected:
    CRIArray(const std::shared_ptr<SharedResource> &res,
             const std::shared_ptr<GDALGroup> &root, const Array &a,
             size_t iLevel, std::vector<int64_t> pinned,
             std::vector<std::shared_ptr<GDALDimension>> dims)
        : GDALAbstractMDArray("/", a.name),
          ReadOnlyArray("/", a.name, std::move(dims), a.eDT,
                        res->index->indexPath),
          m_res(res), m_root(root), m_a(a), m_iLevel(iLevel),
          m_l(a.levels[iLevel]), m_pinned(std::move(pinned))
    {
        for (size_t d = 0; d < m_pinned.size(); ++d)
            if (m_pinned[d] < 0)
                m_exposed.push_back(static_cast<int>(d));
        const CPLJSONObject &at = a.attrs;
        m_osUnit = at.GetString("units");
        const auto fv = at.GetObj("_FillValue");
        if (fv.IsValid() && fv.GetType() != CPLJSONObject::Type::Null)
        {
            Array tmp;
            tmp.eDT = a.eDT;
            tmp.itemSize = a.itemSize;
            double d = 0;
            if (fv.GetType() == CPLJSONObject::Type::String)
            {
                const std::string s = fv.ToString();
                d = s == "NaN"       ? std::numeric_limits<double>::quiet_NaN()
                    : s == "Infinity" ? std::numeric_limits<double>::infinity()
                    : s == "-Infinity"
                        ? -std::numeric_limits<double>::infinity()
                        : CPLAtof(s.c_str());
            }
            else
                d = fv.ToDouble();
            m_nodata.resize(a.itemSize);
            if ((a.eDT == GDT_Int64 || a.eDT == GDT_UInt64) &&
                fv.GetType() != CPLJSONObject::Type::String &&
                fv.GetType() != CPLJSONObject::Type::Double)
            {
                const int64_t v = fv.ToLong();
                memcpy(m_nodata.data(), &v, 8);
            }
            else
                GDALCopyWords(&d, GDT_Float64, 0, m_nodata.data(), a.eDT, 0, 1);
            m_hasNodata = true;
        }
        const auto sc = at.GetObj("scale_factor");
        if (sc.IsValid() && sc.GetType() != CPLJSONObject::Type::Null)
        {
            m_scale = sc.ToDouble();
            m_hasScale = true;
        }
        const auto of = at.GetObj("add_offset");
        if (of.IsValid() && of.GetType() != CPLJSONObject::Type::Null)
        {
            m_offset = of.ToDouble();
            m_hasOffset = true;
        }
        m_attrs = AttributesFromJSON(GetFullName(), at,
                                     {"_FillValue", "scale_factor",
                                      "add_offset"});
    }

    bool IRead(const GUInt64 *arrayStartIdx, const size_t *count,
               const GInt64 *arrayStep, const GPtrDiff_t *bufferStride,
               const GDALExtendedDataType &bufferDataType,
               void *pDstBuffer) const override;

    bool IAdviseRead(const GUInt64 *arrayStartIdx, const size_t *count,
                     CSLConstList) const override
    {
        const int nd = static_cast<int>(m_a.dims.size());
        std::vector<GUInt64> start(nd);
        std::vector<size_t> cnt(nd);
        std::vector<GInt64> step(nd, 1);
        ToFull(arrayStartIdx, count, nullptr, start, cnt, step);
        Coords lo, hi;
        if (!ChunkBox(start, cnt, step, lo, hi))
            return true;
        std::unordered_map<Coords, ChunkCache::Buffer, CoordsHash> chunks;
        return GetChunks(lo, hi, chunks);
    }

    void ToFull(const GUInt64 *s, const size_t *c, const GInt64 *st,
                std::vector<GUInt64> &start, std::vector<size_t> &cnt,
                std::vector<GInt64> &step) const
    {
        for (size_t d = 0; d < m_pinned.size(); ++d)
        {
            if (m_pinned[d] >= 0)
            {
                start[d] = static_cast<GUInt64>(m_pinned[d]);
                cnt[d] = 1;
                step[d] = 1;
            }
        }
        for (size_t e = 0; e < m_exposed.size(); ++e)
        {
            const int d = m_exposed[e];
            start[d] = s[e];
            cnt[d] = c[e];
            step[d] = st ? st[e] : 1;
        }
    }

    bool ChunkBox(const std::vector<GUInt64> &start,
                  const std::vector<size_t> &cnt,
                  const std::vector<GInt64> &step, Coords &lo,
                  Coords &hi) const
    {
        const int nd = static_cast<int>(m_a.dims.size());
        lo.n = hi.n = nd;
        for (int d = 0; d < nd; ++d)
        {
            if (cnt[d] == 0)
                return false;
            const GInt64 a0 = static_cast<GInt64>(start[d]);
            const GInt64 a1 = a0 + static_cast<GInt64>(cnt[d] - 1) * step[d];
            const GInt64 mn = std::min(a0, a1), mx = std::max(a0, a1);
            lo.c[d] = mn / static_cast<GInt64>(m_l.chunk[d]);
            hi.c[d] = mx / static_cast<GInt64>(m_l.chunk[d]);
        }
        return true;
    }

    /** Decoded chunks of the box (nullptr for chunks with no row). */
    bool GetChunks(const Coords &lo, const Coords &hi,
                   std::unordered_map<Coords, ChunkCache::Buffer, CoordsHash>
                       &chunks) const;

    bool NormalizeChunk(const Coords &c, std::vector<GByte> &buf,
                        const std::string &what) const;

    static std::string CoordsText(const Coords &c)
    {
        std::string s = "(";
        for (int i = 0; i < c.n; ++i)
            s += (i ? "," : "") + std::to_string(c.c[i]);
        return s + ")";
    }

    std::string ChunkName(const Coords &c) const
    {
        return m_a.name + " level " + std::to_string(m_l.level) + " chunk " +
               CoordsText(c);
    }

    /** The SRS, built on first use (PROJ's WKT parsing is the costliest
     * part of opening otherwise). */
    std::shared_ptr<OGRSpatialReference> BuildSRS() const
    {
        const auto &res = m_res;
        const Array &a = m_a;
        std::shared_ptr<OGRSpatialReference> srs;
        if (!res->index->crsWkt.empty())
        {
            int iX = 0, iY = 0;
            for (size_t i = 0; i < m_dims.size(); ++i)
            {
                if (m_dims[i]->GetType() == GDAL_DIM_TYPE_HORIZONTAL_X)
                    iX = static_cast<int>(i) + 1;
                else if (m_dims[i]->GetType() == GDAL_DIM_TYPE_HORIZONTAL_Y)
                    iY = static_cast<int>(i) + 1;
            }
            if ((iX == 0 || iY == 0) && m_dims.size() >= 2)
            {
                // Spatial dims are the two innermost (band innermost for
                // pixel-interleaved arrays).
                int last = static_cast<int>(m_dims.size());
                if (a.bandDim >= 0 &&
                    m_exposed.back() == a.bandDim && last >= 3)
                    last -= 1;
                iX = last;
                iY = last - 1;
            }
            if (iX > 0 && iY > 0)
            {
                srs = std::make_shared<OGRSpatialReference>();
                if (srs->importFromWkt(res->index->crsWkt.c_str()) != OGRERR_NONE)
                {
                    CPLError(CE_Warning, CPLE_AppDefined,
                             "CRI: %s: crs.wkt cannot be parsed; %s has no SRS",
                             res->index->indexPath.c_str(), a.name.c_str());
                    return nullptr;
                }
                srs->SetAxisMappingStrategy(OAMS_TRADITIONAL_GIS_ORDER);
                const auto &m = srs->GetDataAxisToSRSAxisMapping();
                if (m == std::vector<int>{2, 1} ||
                    m == std::vector<int>{2, 1, 3})
                    srs->SetDataAxisToSRSAxisMapping({iY, iX});
                else
                    srs->SetDataAxisToSRSAxisMapping({iX, iY});
            }
        }
        return srs;
    }

  public:
    static std::shared_ptr<CRIArray>
    Create(const std::shared_ptr<SharedResource> &res,
           const std::shared_ptr<GDALGroup> &root, const Array &a,
           size_t iLevel, std::vector<int64_t> pinned,
           std::vector<std::shared_ptr<GDALDimension>> dims)
    {
        auto arr = std::shared_ptr<CRIArray>(new CRIArray(
            res, root, a, iLevel, std::move(pinned), std::move(dims)));
        arr->SetSelf(arr);
        return arr;
    }

    std::vector<GUInt64> GetBlockSize() const override
    {
        std::vector<GUInt64> b;
        for (int d : m_exposed)
            b.push_back(m_l.chunk[d]);
        return b;
    }
    const std::string &GetUnit() const override
    {
        return m_osUnit;
    }
    std::shared_ptr<OGRSpatialReference> GetSpatialRef() const override
    {
        std::lock_guard<std::mutex> lock(m_srsMutex);
        if (!m_srsDone)
        {
            m_srs = BuildSRS();
            m_srsDone = true;
        }
        return m_srs;
    }
    const void *GetRawNoDataValue() const override
    {
        return m_hasNodata ? m_nodata.data() : nullptr;
    }
    double GetOffset(bool *pbHas, GDALDataType *peType) const override
    {
        if (pbHas)
            *pbHas = m_hasOffset;
        if (peType)
            *peType = GDT_Unknown;
        return m_offset;
    }
    double GetScale(bool *pbHas, GDALDataType *peType) const override
    {
        if (pbHas)
            *pbHas = m_hasScale;
        if (peType)
            *peType = GDT_Unknown;
        return m_scale;
    }
    std::vector<std::shared_ptr<GDALAttribute>>
    GetAttributes(CSLConstList) const override
    {
        return m_attrs;
    }
    std::shared_ptr<GDALGroup> GetRootGroup() const override
    {
        return m_root;
    }
    CSLConstList GetStructuralInfo() const override
    {
        if (m_structural.empty())
        {
            std::string chain;
            for (const auto &s : m_l.codec)
                chain += (chain.empty() ? "" : ",") + s.name;
            m_structural.SetNameValue("CODEC", chain.empty() ? "none" : chain.c_str());
            m_structural.SetNameValue("LEVEL", CPLSPrintf("%d", m_l.level));
            m_structural.SetNameValue("DTYPE", m_a.dtype.c_str());
        }
        return m_structural.List();
    }
    int GetOverviewCount() const override
    {
        return m_iLevel == 0 ? static_cast<int>(m_a.levels.size()) - 1 : 0;
    }
    std::shared_ptr<GDALMDArray> GetOverview(int idx) const override;
    bool GetRawBlockInfo(const uint64_t *panBlockCoordinates,
                         GDALMDArrayRawBlockInfo &info) const override;
};

/** The root group: one array per variable, the coordinate arrays of the
 * dimensions. */
class CRIGroup final : public GDALGroup
{
  public:
    std::shared_ptr<SharedResource> m_res;
    std::map<std::string, std::shared_ptr<GDALDimension>> m_dims{};
    std::map<std::string, std::shared_ptr<GDALMDArray>> m_coords{};
    std::vector<std::shared_ptr<GDALAttribute>> m_attrs{};
    // Dimensions of levels > 0 whose size differs, keyed by (name, level).
    mutable std::mutex m_mutex{};
    mutable std::map<std::pair<std::string, int>, std::shared_ptr<GDALDimension>>
        m_levelDims{};
    mutable std::vector<std::shared_ptr<GDALMDArray>> m_levelCoords{};

    explicit CRIGroup(std::shared_ptr<SharedResource> res)
        : GDALGroup(std::string(), "/"), m_res(std::move(res))
    {
    }

    void SetSelfPtr(const std::shared_ptr<CRIGroup> &self)
    {
        SetSelf(self);
    }

    void Init()
    {
        std::lock_guard<std::recursive_mutex> jsonLock(JSONMutex());
        const Index &idx = *m_res->index;
        for (const auto &kv : idx.dims)
        {
            const Dimension &d = kv.second;
            std::string dir;
            const std::string type = DimTypeDirection(d, dir);
            auto dim = std::make_shared<GDALDimensionWeakIndexingVar>(
                "/", d.name, type, dir, d.size);
            m_dims[d.name] = dim;
            std::shared_ptr<GDALMDArray> var;
            if (!d.values.empty() && d.values.size() == d.size)
            {
                auto va = ValuesArray::Create("/", d.name, dim, d.values,
                                              idx.indexPath);
                for (auto &at : AttributesFromJSON(
                         "/" + d.name, d.json,
                         {"size", "type", "values", "from_geotransform",
                          "variable"}))
                    va->AddAttribute(at);
                va->SetUnitStr(d.json.GetString("units"));
                var = va;
            }
            else if (d.fromGeoTransform)
                var = GeoTransformCoordinate(d, 0, dim);
            if (var)
            {
                dim->SetIndexingVariable(var);
                m_coords[d.name] = var;
            }
        }
        m_attrs = AttributesFromJSON("/", idx.attrs, {});
    }

    /** y/x coordinate (pixel centres) from the geotransform of a level of
     * the first array that uses the dimension. */
    std::shared_ptr<GDALMDArray>
    GeoTransformCoordinate(const Dimension &d, int level,
                           const std::shared_ptr<GDALDimension> &dim) const
    {
        for (const auto &a : m_res->index->arrays)
        {
            const int nd = static_cast<int>(a.dims.size());
            for (const auto &l : a.levels)
            {
                if (l.level != level || !l.hasGeoTransform || l.gt[2] != 0 ||
                    l.gt[4] != 0)
                    continue;
                // The innermost spatial pair: x is the last non-band dim.
                int xd = nd - 1;
                if (a.bandDim == nd - 1)
                    xd = nd - 2;
                const int yd = xd - 1;
                for (int k = 0; k < nd; ++k)
                {
                    if (a.dims[k] != d.name)
                        continue;
                    std::shared_ptr<GDALMDArrayRegularlySpaced> r;
                    if (k == xd)
                        r = GDALMDArrayRegularlySpaced::Create(
                            "/", d.name, dim, l.gt[0] + 0.5 * l.gt[1], l.gt[1], 0);
                    else if (k == yd)
                        r = GDALMDArrayRegularlySpaced::Create(
                            "/", d.name, dim, l.gt[3] + 0.5 * l.gt[5], l.gt[5], 0);
                    if (r)
                    {
                        for (auto &at : AttributesFromJSON(
                                 "/" + d.name, d.json,
                                 {"size", "type", "values",
                                  "from_geotransform", "variable"}))
                            r->AddAttribute(at);
                        return r;
                    }
                }
            }
        }
        return nullptr;
    }

    /** Dimensions of array `a` at level index `iLevel`, without the pinned
     * ones. */
    std::vector<std::shared_ptr<GDALDimension>>
    DimsFor(const Array &a, size_t iLevel,
            const std::vector<int64_t> &pinned) const
    {
        std::vector<std::shared_ptr<GDALDimension>> out;
        const Level &l = a.levels[iLevel];
        for (size_t d = 0; d < a.dims.size(); ++d)
        {
            if (pinned[d] >= 0)
                continue;
            auto it = m_dims.find(a.dims[d]);
            if (it != m_dims.end() && it->second->GetSize() == l.shape[d])
            {
                out.push_back(it->second);
                continue;
            }
            std::lock_guard<std::mutex> lock(m_mutex);
            auto key = std::make_pair(a.dims[d], l.level);
            auto lit = m_levelDims.find(key);
            if (lit == m_levelDims.end() ||
                lit->second->GetSize() != l.shape[d])
            {
                const Dimension &dd = m_res->index->dims.at(a.dims[d]);
                std::string dir;
                const std::string type = DimTypeDirection(dd, dir);
                auto dim = std::make_shared<GDALDimensionWeakIndexingVar>(
                    "/", dd.name, type, dir, l.shape[d]);
                if (dd.fromGeoTransform)
                {
                    if (auto var = GeoTransformCoordinate(dd, l.level, dim))
                    {
                        dim->SetIndexingVariable(var);
                        m_levelCoords.push_back(var);
                    }
                }
                lit = m_levelDims.emplace(key, dim).first;
            }
            out.push_back(lit->second);
        }
        return out;
    }

    std::shared_ptr<CRIArray>
    MakeArray(const Array &a, size_t iLevel,
              const std::vector<int64_t> &pinned) const
    {
        std::lock_guard<std::recursive_mutex> jsonLock(JSONMutex());
        auto self = std::dynamic_pointer_cast<GDALGroup>(m_pSelf.lock());
        return CRIArray::Create(m_res, self, a, iLevel, pinned,
                                DimsFor(a, iLevel, pinned));
    }

    std::vector<std::string> GetMDArrayNames(CSLConstList) const override
    {
        std::vector<std::string> names;
        for (const auto &kv : m_coords)
            names.push_back(kv.first);
        for (const auto &a : m_res->index->arrays)
            if (m_coords.find(a.name) == m_coords.end())
                names.push_back(a.name);
        return names;
    }

    std::shared_ptr<GDALMDArray> OpenMDArray(const std::string &name,
                                             CSLConstList) const override
    {
        auto it = m_coords.find(name);
        if (it != m_coords.end())
            return it->second;
        const Array *a = m_res->index->FindArray(name);
        if (!a)
            return nullptr;
        return MakeArray(*a, 0, std::vector<int64_t>(a->dims.size(), -1));
    }

    std::vector<std::shared_ptr<GDALDimension>>
    GetDimensions(CSLConstList) const override
    {
        std::vector<std::shared_ptr<GDALDimension>> v;
        for (const auto &kv : m_dims)
            v.push_back(kv.second);
        return v;
    }

    std::vector<std::shared_ptr<GDALAttribute>>
    GetAttributes(CSLConstList) const override
    {
        return m_attrs;
    }
};

std::shared_ptr<GDALMDArray> CRIArray::GetOverview(int idx) const
{
    if (m_iLevel != 0 || idx < 0 ||
        static_cast<size_t>(idx) + 1 >= m_a.levels.size())
        return nullptr;
    auto grp = std::dynamic_pointer_cast<CRIGroup>(m_root);
    if (!grp)
        return nullptr;
    return grp->MakeArray(m_a, static_cast<size_t>(idx) + 1, m_pinned);
}

bool CRIArray::GetRawBlockInfo(const uint64_t *panBlockCoordinates,
                               GDALMDArrayRawBlockInfo &info) const
{
    info.clear();
    const int nd = static_cast<int>(m_a.dims.size());
    Coords c;
    c.n = nd;
    size_t e = 0;
    for (int d = 0; d < nd; ++d)
    {
        const uint64_t nBlocks =
            (m_l.shape[d] + m_l.chunk[d] - 1) / m_l.chunk[d];
        uint64_t b;
        if (m_pinned[d] >= 0)
            b = static_cast<uint64_t>(m_pinned[d]) / m_l.chunk[d];
        else
            b = panBlockCoordinates[e++];
        if (b >= nBlocks)
        {
            CPLError(CE_Failure, CPLE_AppDefined,
                     "GetRawBlockInfo() failed: array %s: invalid block "
                     "coordinate (%u) for dimension %d",
                     m_a.name.c_str(), static_cast<unsigned>(b), d);
            return false;
        }
        c.c[d] = static_cast<int64_t>(b);
    }
    std::vector<std::pair<Coords, ChunkRef>> rows;
    if (!m_res->table->Lookup(m_a, m_l.level, c, c, rows))
        return false;
    CPLStringList aosInfo;
    aosInfo.SetNameValue("CODEC", m_l.codecJSON.c_str());
    aosInfo.SetNameValue("DTYPE", m_a.dtype.c_str());
    aosInfo.SetNameValue("ENDIANNESS",
                         m_a.dtype[0] == '>' ? "BIG" : "LITTLE");
    std::string cs;
    for (auto v : m_l.chunk)
        cs += (cs.empty() ? "" : ",") + std::to_string(v);
    aosInfo.SetNameValue("CHUNK_SHAPE", cs.c_str());
    aosInfo.SetNameValue("LEVEL", CPLSPrintf("%d", m_l.level));
    if (rows.empty())
    {
        // No row: the chunk reads as the fill value.
        aosInfo.SetNameValue("MISSING", "YES");
        info.papszInfo = aosInfo.StealList();
        return true;
    }
    const ChunkRef &r = rows.front().second;
    info.nSize = static_cast<uint64_t>(r.length);
    if (r.skip)
        aosInfo.SetNameValue("SKIP", CPLSPrintf("%u", r.skip));
    if (r.outside)  // not read by IRead(): its footprint misses BBOX
        aosInfo.SetNameValue("SPATIAL_FILTER", "OUTSIDE");
    if (r.raw)
    {
        info.pabyInlineData = static_cast<GByte *>(VSI_MALLOC_VERBOSE(
            std::max<size_t>(1, r.raw->size())));
        if (!info.pabyInlineData)
            return false;
        memcpy(info.pabyInlineData, r.raw->data(), r.raw->size());
        aosInfo.SetNameValue("INLINE", "YES");
    }
    else
    {
        info.pszFilename = CPLStrdup(m_res->table->GetPath(r.pathIdx).c_str());
        info.nOffset = static_cast<uint64_t>(r.offset);
        aosInfo.SetNameValue("PATH",
                             m_res->table->GetStoredPath(r.pathIdx).c_str());
    }
    info.papszInfo = aosInfo.StealList();
    return true;
}

bool CRIArray::NormalizeChunk(const Coords &c, std::vector<GByte> &buf,
                              const std::string &what) const
{
    const size_t full = FullChunkBytes();
    if (buf.size() == full)
        return true;
    const int nd = static_cast<int>(m_a.dims.size());
    // §3.3: the first short-edge dim along which this chunk is the last.
    for (int d : m_a.shortEdgeDims)
    {
        const uint64_t nBlocks =
            (m_l.shape[d] + m_l.chunk[d] - 1) / m_l.chunk[d];
        if (static_cast<uint64_t>(c.c[d]) + 1 != nBlocks)
            continue;
        size_t other = static_cast<size_t>(m_a.itemSize);
        for (int k = 0; k < nd; ++k)
            if (k != d)
                other *= static_cast<size_t>(m_l.chunk[k]);
        const uint64_t valid = m_l.shape[d] - static_cast<uint64_t>(c.c[d]) * m_l.chunk[d];
        if (buf.size() % other != 0 || buf.size() / other < valid ||
            buf.size() / other >= m_l.chunk[d])
            break;
        const size_t n = buf.size() / other;
        size_t outer = 1, inner = static_cast<size_t>(m_a.itemSize);
        for (int k = 0; k < d; ++k)
            outer *= static_cast<size_t>(m_l.chunk[k]);
        for (int k = d + 1; k < nd; ++k)
            inner *= static_cast<size_t>(m_l.chunk[k]);
        std::vector<GByte> out(full);
        for (size_t i = 0; i < full; i += m_a.itemSize)
            memcpy(out.data() + i, m_a.fill.data(), m_a.itemSize);
        for (size_t o = 0; o < outer; ++o)
            memcpy(out.data() + o * m_l.chunk[d] * inner,
                   buf.data() + o * n * inner, n * inner);
        buf.swap(out);
        return true;
    }
    CPLError(CE_Failure, CPLE_AppDefined,
             "CRI: %s decoded to %u bytes, expected %u (corrupt chunk)",
             what.c_str(), static_cast<unsigned>(buf.size()),
             static_cast<unsigned>(full));
    return false;
}

bool CRIArray::GetChunks(
    const Coords &lo, const Coords &hi,
    std::unordered_map<Coords, ChunkCache::Buffer, CoordsHash> &chunks) const
{
    const std::string unsupported = UnsupportedCodec(m_l);
    std::vector<std::pair<Coords, ChunkRef>> rows;
    if (!m_res->table->Lookup(m_a, m_l.level, lo, hi, rows))
        return false;
    struct Todo
    {
        Coords c;
        ChunkRef ref;
        std::vector<GByte> bytes;
        std::string what;
        std::shared_ptr<std::vector<GByte>> decoded;
    };
    std::vector<Todo> todo;
    ReadStats &stats = m_res->table->Stats();
    size_t nOutside = 0, nCached = 0;
    for (auto &r : rows)
    {
        if (r.second.outside)
        {
            // Its footprint misses the BBOX open option: left as fill.
            ++nOutside;
            continue;
        }
        ChunkCache::Key key{m_a.name, m_l.level, r.first};
        if (auto b = m_res->cache->Get(key))
        {
            chunks[r.first] = b;
            ++nCached;
            continue;
        }
        todo.push_back({r.first, r.second, {}, ChunkName(r.first), nullptr});
    }
    stats.chunksCached += static_cast<int64_t>(nCached);
    // (The message is only built when some debug output is on.)
    const char *pszDebug = CPLGetConfigOption("CPL_DEBUG", nullptr);
    if (pszDebug)
        CPLDebug("CRI",
                 "read %s level %d chunks %s..%s: %zu rows, %zu outside BBOX, "
                 "%zu cached, %zu to fetch",
                 m_a.name.c_str(), m_l.level, CoordsText(lo).c_str(),
                 CoordsText(hi).c_str(), rows.size(), nOutside, nCached,
                 todo.size());
    if (todo.empty())
        return true;
    if (pszDebug && CPLString(pszDebug).ifind("CRI_CHUNKS") != std::string::npos)
    {
        // Which chunks are read, only when CPL_DEBUG names CRI_CHUNKS (a
        // long line): tests compare the set with `chunkindex query`.
        std::string list;
        for (const auto &t : todo)
            list += " " + CoordsText(t.c);
        CPLDebug("CRI_CHUNKS", "%s level %d:%s", m_a.name.c_str(), m_l.level,
                 list.c_str());
    }
    if (!unsupported.empty())
    {
        CPLError(CE_Failure, CPLE_NotSupported,
                 "CRI: %s: %s: codec %s is not supported by the CRI driver",
                 m_res->index->indexPath.c_str(), todo.front().what.c_str(),
                 unsupported.c_str());
        return false;
    }
    std::vector<RangeRequest> reqs;
    for (auto &t : todo)
    {
        if (t.ref.raw)
        {
            t.bytes.assign(t.ref.raw->begin(), t.ref.raw->end());
            continue;
        }
        RangeRequest rq;
        rq.path = m_res->table->GetPath(t.ref.pathIdx);
        rq.offset = t.ref.offset;
        rq.length = t.ref.length;
        rq.dest = &t.bytes;
        rq.what = t.what;
        reqs.push_back(std::move(rq));
    }
    if (!FetchRanges(reqs))
        return false;
    stats.chunksFetched += static_cast<int64_t>(reqs.size());
    for (const auto &rq : reqs)
        stats.bytesFetched += rq.length;

    // Decode, in a few threads when there are many chunks.
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex errMutex;
    std::string firstError;
    auto work = [&](bool collectErrors)
    {
        struct Col
        {
            std::string msg{};
        } col;
        if (collectErrors)
            CPLPushErrorHandlerEx(
                [](CPLErr e, CPLErrorNum, const char *msg)
                {
                    auto *c = static_cast<Col *>(CPLGetErrorHandlerUserData());
                    if (e >= CE_Failure && c->msg.empty())
                        c->msg = msg;
                },
                &col);
        while (!failed)
        {
            const size_t i = next.fetch_add(1);
            if (i >= todo.size())
                break;
            Todo &t = todo[i];
            auto out = std::make_shared<std::vector<GByte>>();
            if (!DecodeChunk(m_a, m_l, t.bytes.data(), t.bytes.size(), *out,
                             m_res->index->indexPath + ": " + t.what,
                             t.ref.skip) ||
                !NormalizeChunk(t.c, *out, m_res->index->indexPath + ": " + t.what))
            {
                failed = true;
                break;
            }
            t.bytes.clear();
            t.bytes.shrink_to_fit();
            t.decoded = std::move(out);
        }
        if (collectErrors)
        {
            CPLPopErrorHandler();
            std::lock_guard<std::mutex> lock(errMutex);
            if (!col.msg.empty() && firstError.empty())
                firstError = col.msg;
        }
    };
    const int nThreads = std::min<int>(
        static_cast<int>(todo.size() / 4),
        std::max(1, atoi(CPLGetConfigOption("CRI_DECODE_THREADS",
                                            CPLSPrintf("%d", std::min(4, CPLGetNumCPUs()))))));
    if (nThreads <= 1)
        work(false);
    else
    {
        std::vector<std::thread> th;
        for (int t = 0; t < nThreads; ++t)
            th.emplace_back(work, true);
        for (auto &t : th)
            t.join();
        if (!firstError.empty())
            CPLError(CE_Failure, CPLE_AppDefined, "%s", firstError.c_str());
    }
    if (failed)
        return false;
    stats.chunksDecoded += static_cast<int64_t>(todo.size());
    for (auto &t : todo)
    {
        ChunkCache::Buffer b = t.decoded;
        m_res->cache->Put({m_a.name, m_l.level, t.c}, b);
        chunks[t.c] = b;
    }
    return true;
}

bool CRIArray::IRead(const GUInt64 *arrayStartIdx, const size_t *count,
                     const GInt64 *arrayStep, const GPtrDiff_t *bufferStride,
                     const GDALExtendedDataType &bufferDataType,
                     void *pDstBuffer) const
{
    if (bufferDataType.GetClass() != GEDTC_NUMERIC)
    {
        CPLError(CE_Failure, CPLE_NotSupported,
                 "CRI: only numeric buffer data types are supported");
        return false;
    }
    const GDALDataType eBufDT = bufferDataType.GetNumericDataType();
    const int nBufSize = GDALGetDataTypeSizeBytes(eBufDT);
    const int nd = static_cast<int>(m_a.dims.size());
    std::vector<GUInt64> start(nd);
    std::vector<size_t> cnt(nd);
    std::vector<GInt64> step(nd, 1);
    ToFull(arrayStartIdx, count, arrayStep, start, cnt, step);
    std::vector<GPtrDiff_t> bstride(nd, 0);
    for (size_t e = 0; e < m_exposed.size(); ++e)
        bstride[m_exposed[e]] = bufferStride[e];
    Coords lo, hi;
    if (!ChunkBox(start, cnt, step, lo, hi))
        return true;
    std::unordered_map<Coords, ChunkCache::Buffer, CoordsHash> chunks;
    if (!GetChunks(lo, hi, chunks))
        return false;

    // For each chunk of the box, the output indices that fall in it.
    Coords c = lo;
    std::vector<size_t> oLo(nd), oHi(nd);  // output index range [lo, hi)
    std::vector<size_t> chunkStride(nd);   // in elements
    {
        size_t s = 1;
        for (int d = nd - 1; d >= 0; --d)
        {
            chunkStride[d] = s;
            s *= static_cast<size_t>(m_l.chunk[d]);
        }
    }
    std::vector<size_t> it(nd);
    while (true)
    {
        bool empty = false;
        for (int d = 0; d < nd && !empty; ++d)
        {
            const GInt64 cs = c.c[d] * static_cast<GInt64>(m_l.chunk[d]);
            const GInt64 ce = cs + static_cast<GInt64>(m_l.chunk[d]);  // excl.
            const GInt64 s0 = static_cast<GInt64>(start[d]);
            const GInt64 st = step[d];
            GInt64 iLo, iHi;  // inclusive
            if (st > 0)
            {
                iLo = cs <= s0 ? 0 : (cs - s0 + st - 1) / st;
                iHi = (ce - 1 - s0) < 0 ? -1 : (ce - 1 - s0) / st;
            }
            else if (st < 0)
            {
                const GInt64 a = -st;
                iLo = s0 <= ce - 1 ? 0 : (s0 - (ce - 1) + a - 1) / a;
                iHi = s0 < cs ? -1 : (s0 - cs) / a;
            }
            else
            {
                iLo = 0;
                iHi = (s0 >= cs && s0 < ce) ? static_cast<GInt64>(cnt[d]) - 1 : -1;
            }
            iHi = std::min<GInt64>(iHi, static_cast<GInt64>(cnt[d]) - 1);
            if (iHi < iLo)
                empty = true;
            else
            {
                oLo[d] = static_cast<size_t>(iLo);
                oHi[d] = static_cast<size_t>(iHi) + 1;
            }
        }
        if (!empty)
        {
            auto f = chunks.find(c);
            const GByte *src =
                f != chunks.end() && f->second ? f->second->data() : nullptr;
            // Iterate over all but the innermost dim.
            for (int d = 0; d < nd; ++d)
                it[d] = oLo[d];
            const int last = nd - 1;
            const size_t nInner = oHi[last] - oLo[last];
            while (true)
            {
                GPtrDiff_t dstOff = 0;
                size_t srcOff = 0;
                for (int d = 0; d < nd; ++d)
                {
                    dstOff += static_cast<GPtrDiff_t>(it[d]) * bstride[d];
                    const GInt64 a = static_cast<GInt64>(start[d]) +
                                     static_cast<GInt64>(it[d]) * step[d] -
                                     c.c[d] * static_cast<GInt64>(m_l.chunk[d]);
                    srcOff += static_cast<size_t>(a) * chunkStride[d];
                }
                GByte *dst = static_cast<GByte *>(pDstBuffer) + dstOff * nBufSize;
                if (src)
                    GDALCopyWords64(src + srcOff * m_a.itemSize, m_a.eDT,
                                    static_cast<int>(step[last] * m_a.itemSize),
                                    dst, eBufDT,
                                    static_cast<int>(bstride[last] * nBufSize),
                                    static_cast<GPtrDiff_t>(nInner));
                else
                    GDALCopyWords64(m_a.fill.data(), m_a.eDT, 0, dst, eBufDT,
                                    static_cast<int>(bstride[last] * nBufSize),
                                    static_cast<GPtrDiff_t>(nInner));
                int d = last - 1;
                for (; d >= 0; --d)
                {
                    if (++it[d] < oHi[d])
                        break;
                    it[d] = oLo[d];
                }
                if (d < 0)
                    break;
            }
        }
        if (!NextInBox(c, lo, hi))
            break;
    }
    return true;
}

/** The dataset returned in multidimensional mode. */
class CRIMultiDimDataset final : public GDALDataset
{
    std::shared_ptr<GDALGroup> m_root;

  public:
    explicit CRIMultiDimDataset(std::shared_ptr<GDALGroup> root)
        : m_root(std::move(root))
    {
    }
    std::shared_ptr<GDALGroup> GetRootGroup() const override
    {
        return m_root;
    }
};

std::shared_ptr<CRIGroup> MakeRoot(std::shared_ptr<Index> index,
                                   std::shared_ptr<ChunkTable> table)
{
    auto res = std::make_shared<SharedResource>();
    res->index = std::move(index);
    res->table = std::move(table);
    const GIntBig nMB = CPLAtoGIntBig(CPLGetConfigOption("CRI_CACHE_MB", "256"));
    res->cache = std::make_unique<ChunkCache>(static_cast<size_t>(nMB) << 20);
    auto root = std::make_shared<CRIGroup>(res);
    root->SetSelfPtr(root);
    root->Init();
    res->root = root;
    return root;
}

}  // namespace

GDALDataset *OpenMultiDim(std::shared_ptr<Index> index,
                          std::shared_ptr<ChunkTable> table,
                          const std::string &osDescription)
{
    auto root = MakeRoot(std::move(index), std::move(table));
    auto ds = new CRIMultiDimDataset(root);
    ds->SetDescription(osDescription.c_str());
    return ds;
}

GDALDataset *OpenClassic(std::shared_ptr<Index> index,
                         std::shared_ptr<ChunkTable> table,
                         const std::string &osVariable,
                         const std::vector<std::pair<std::string, uint64_t>>
                             &fixedIndices,
                         int nLevel, const std::string &osDescription)
{
    auto root = MakeRoot(index, std::move(table));
    const Array *a = index->FindArray(osVariable);
    if (!a)
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s has no variable '%s'", index->indexPath.c_str(),
                 osVariable.c_str());
        return nullptr;
    }
    size_t iLevel = a->levels.size();
    for (size_t i = 0; i < a->levels.size(); ++i)
        if (a->levels[i].level == nLevel)
            iLevel = i;
    if (iLevel == a->levels.size())
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: variable %s has no level %d",
                 index->indexPath.c_str(), osVariable.c_str(), nLevel);
        return nullptr;
    }
    const int nd = static_cast<int>(a->dims.size());
    std::vector<int64_t> pinned(nd, -1);
    for (const auto &fi : fixedIndices)
    {
        int d = -1;
        for (int k = 0; k < nd; ++k)
            if (a->dims[k] == fi.first)
                d = k;
        if (d < 0)
        {
            CPLError(CE_Failure, CPLE_AppDefined,
                     "CRI: %s: variable %s has no dimension %s",
                     index->indexPath.c_str(), osVariable.c_str(),
                     fi.first.c_str());
            return nullptr;
        }
        if (fi.second >= a->levels[iLevel].shape[d])
        {
            CPLError(CE_Failure, CPLE_AppDefined,
                     "CRI: %s: index %u is out of range for dimension %s "
                     "(size %u)",
                     index->indexPath.c_str(), static_cast<unsigned>(fi.second),
                     fi.first.c_str(),
                     static_cast<unsigned>(a->levels[iLevel].shape[d]));
            return nullptr;
        }
        pinned[d] = static_cast<int64_t>(fi.second);
    }
    auto arr = root->MakeArray(*a, iLevel, pinned);
    const auto &dims = arr->GetDimensions();
    const size_t n = dims.size();
    if (n < 2)
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: variable %s has fewer than 2 dimensions left",
                 index->indexPath.c_str(), osVariable.c_str());
        return nullptr;
    }
    // x is the innermost non-band dimension, y the one before it.
    size_t iX = n - 1;
    if (a->bandDim == nd - 1 && pinned[nd - 1] < 0 && n >= 3)
        iX = n - 2;
    size_t iY = iX - 1;
    for (size_t i = 0; i < n; ++i)
    {
        if (dims[i]->GetType() == GDAL_DIM_TYPE_HORIZONTAL_X)
            iX = i;
        else if (dims[i]->GetType() == GDAL_DIM_TYPE_HORIZONTAL_Y)
            iY = i;
    }
    std::unique_ptr<GDALDataset> ds(arr->AsClassicDataset(iX, iY, root, nullptr));
    if (!ds)
        return nullptr;
    ds->SetDescription(osDescription.c_str());
    return ds.release();
}

}  // namespace cri
