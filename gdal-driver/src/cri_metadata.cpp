// The `cri` JSON document (spec §2) and path resolution (spec §4).
#include "cri.h"

#include "ogr_spatialref.h"

#include <cmath>
#include <limits>

namespace cri
{

std::recursive_mutex &JSONMutex()
{
    static std::recursive_mutex m;
    return m;
}

const Array *Index::FindArray(const std::string &name) const
{
    for (const auto &a : arrays)
        if (a.name == name)
            return &a;
    return nullptr;
}

static bool DTypeFromString(const std::string &s, Array &a)
{
    if (s.size() < 3)
        return false;
    const char order = s[0];
    const std::string kind = s.substr(1);
    static const std::map<std::string, GDALDataType> types = {
        {"u1", GDT_UInt8},    {"i1", GDT_Int8},     {"u2", GDT_UInt16},
        {"i2", GDT_Int16},    {"u4", GDT_UInt32},   {"i4", GDT_Int32},
        {"u8", GDT_UInt64},   {"i8", GDT_Int64},    {"f2", GDT_Float16},
        {"f4", GDT_Float32},  {"f8", GDT_Float64},  {"c8", GDT_CFloat32},
        {"c16", GDT_CFloat64}, {"ci2", GDT_CInt16},   {"ci4", GDT_CInt32}};
    auto it = types.find(kind);
    if (it == types.end() || (order != '<' && order != '>' && order != '|'))
        return false;
    a.eDT = it->second;
    a.itemSize = GDALGetDataTypeSizeBytes(a.eDT);
    if (order == '|' && a.itemSize != 1)
        return false;
#if CPL_IS_LSB
    a.swap = order == '>' && a.itemSize > 1;
#else
    a.swap = order == '<' && a.itemSize > 1;
#endif
    return true;
}

static bool ParseFill(const CPLJSONObject &v, Array &a)
{
    a.fill.assign(a.itemSize, 0);
    if (!v.IsValid() || v.GetType() == CPLJSONObject::Type::Null)
    {
        a.hasFill = false;
        return true;
    }
    double d = 0;
    bool isInt = false;
    int64_t i64 = 0;
    switch (v.GetType())
    {
        case CPLJSONObject::Type::String:
        {
            const std::string s = v.ToString();
            if (s == "NaN")
                d = std::numeric_limits<double>::quiet_NaN();
            else if (s == "Infinity")
                d = std::numeric_limits<double>::infinity();
            else if (s == "-Infinity")
                d = -std::numeric_limits<double>::infinity();
            else
                return false;
            break;
        }
        case CPLJSONObject::Type::Integer:
        case CPLJSONObject::Type::Long:
            isInt = true;
            i64 = v.ToLong();
            d = static_cast<double>(i64);
            break;
        case CPLJSONObject::Type::Double:
            d = v.ToDouble();
            break;
        default:
            return false;
    }
    a.hasFill = true;
    if (isInt && a.eDT == GDT_Int64)
        memcpy(a.fill.data(), &i64, 8);
    else if (isInt && a.eDT == GDT_UInt64)
    {
        const uint64_t u = static_cast<uint64_t>(i64);
        memcpy(a.fill.data(), &u, 8);
    }
    else if (GDALDataTypeIsComplex(a.eDT))
    {
        double c[2] = {d, 0};
        GDALCopyWords(c, GDT_CFloat64, 0, a.fill.data(), a.eDT, 0, 1);
    }
    else
        GDALCopyWords(&d, GDT_Float64, 0, a.fill.data(), a.eDT, 0, 1);
    return true;
}

static std::vector<uint64_t> ToU64Vector(const CPLJSONArray &arr)
{
    std::vector<uint64_t> v;
    for (int i = 0; i < arr.Size(); ++i)
        v.push_back(static_cast<uint64_t>(arr[i].ToLong()));
    return v;
}

bool ParseIndexJSON(const std::string &osJSON, const std::string &osIndexPath,
                    Index &index)
{
    const char *pszName = osIndexPath.c_str();
    CPLJSONDocument doc;
    if (!doc.LoadMemory(osJSON))
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: the 'cri' metadata is not valid JSON", pszName);
        return false;
    }
    const CPLJSONObject root = doc.GetRoot();
    index.json = root;
    index.indexPath = osIndexPath;
    index.indexDir = CPLGetPathSafe(osIndexPath.c_str());
    index.version = root.GetString("cri_version");
    if (index.version.empty())
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: 'cri' metadata has no cri_version", pszName);
        return false;
    }
    const int major = atoi(index.version.c_str());
    if (major != SUPPORTED_MAJOR || index.version.find('.') == std::string::npos)
    {
        CPLError(CE_Failure, CPLE_NotSupported,
                 "CRI: %s: cri_version %s is not supported by this driver "
                 "(it reads %d.x)",
                 pszName, index.version.c_str(), SUPPORTED_MAJOR);
        return false;
    }
    index.base = root.GetString("base");
    index.attrs = root.GetObj("attrs");

    const CPLJSONObject dims = root.GetObj("dimensions");
    if (!dims.IsValid() || dims.GetType() != CPLJSONObject::Type::Object)
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: 'cri' metadata has no 'dimensions' object", pszName);
        return false;
    }
    for (const auto &d : dims.GetChildren())
    {
        Dimension dim;
        dim.name = d.GetName();
        dim.size = static_cast<uint64_t>(d.GetLong("size"));
        dim.type = d.GetString("type");
        const auto values = d.GetArray("values");
        if (values.IsValid())
        {
            dim.values.reserve(values.Size());
            for (int i = 0; i < values.Size(); ++i)
                dim.values.push_back(values[i].ToDouble());
        }
        dim.fromGeoTransform = d.GetBool("from_geotransform", false);
        dim.variable = d.GetString("variable");
        dim.json = d;
        index.dims[dim.name] = dim;
    }

    const CPLJSONObject arrays = root.GetObj("arrays");
    if (!arrays.IsValid() || arrays.GetType() != CPLJSONObject::Type::Object ||
        arrays.GetChildren().empty())
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: 'cri' metadata has no 'arrays'", pszName);
        return false;
    }
    for (const auto &ajs : arrays.GetChildren())
    {
        Array a;
        a.name = ajs.GetName();
        const auto dimsArr = ajs.GetArray("dims");
        for (int i = 0; i < dimsArr.Size(); ++i)
            a.dims.push_back(dimsArr[i].ToString());
        if (a.dims.empty() || a.dims.size() > static_cast<size_t>(MAX_DIMS))
        {
            CPLError(CE_Failure, CPLE_AppDefined,
                     "CRI: %s: array %s has %d dimensions (1..%d supported)",
                     pszName, a.name.c_str(), static_cast<int>(a.dims.size()),
                     MAX_DIMS);
            return false;
        }
        for (const auto &dn : a.dims)
        {
            if (index.dims.find(dn) == index.dims.end())
            {
                CPLError(CE_Failure, CPLE_AppDefined,
                         "CRI: %s: array %s uses dimension %s, which is not "
                         "in 'dimensions'",
                         pszName, a.name.c_str(), dn.c_str());
                return false;
            }
        }
        index.K = std::max(index.K, static_cast<int>(a.dims.size()));
        a.dtype = ajs.GetString("dtype");
        if (!DTypeFromString(a.dtype, a))
        {
            CPLError(CE_Failure, CPLE_NotSupported,
                     "CRI: %s: array %s has unsupported dtype '%s'", pszName,
                     a.name.c_str(), a.dtype.c_str());
            return false;
        }
        if (!ParseFill(ajs.GetObj("fill_value"), a))
        {
            CPLError(CE_Failure, CPLE_AppDefined,
                     "CRI: %s: array %s has an invalid fill_value", pszName,
                     a.name.c_str());
            return false;
        }
        a.attrs = ajs.GetObj("attrs");
        a.role = ajs.GetString("role", "data");
        const std::string bandDim = ajs.GetString("band_dim");
        for (size_t i = 0; i < a.dims.size(); ++i)
            if (a.dims[i] == bandDim)
                a.bandDim = static_cast<int>(i);
        const auto sed = ajs.GetArray("short_edge_dims");
        for (int i = 0; sed.IsValid() && i < sed.Size(); ++i)
        {
            const std::string n = sed[i].ToString();
            for (size_t j = 0; j < a.dims.size(); ++j)
                if (a.dims[j] == n)
                    a.shortEdgeDims.push_back(static_cast<int>(j));
        }
        std::sort(a.shortEdgeDims.begin(), a.shortEdgeDims.end());
        const auto levels = ajs.GetArray("levels");
        for (int i = 0; levels.IsValid() && i < levels.Size(); ++i)
        {
            const auto ljs = levels[i];
            Level l;
            l.level = ljs.GetInteger("level");
            l.shape = ToU64Vector(ljs.GetArray("shape"));
            l.chunk = ToU64Vector(ljs.GetArray("chunk_shape"));
            if (l.shape.size() != a.dims.size() ||
                l.chunk.size() != a.dims.size())
            {
                CPLError(CE_Failure, CPLE_AppDefined,
                         "CRI: %s: array %s level %d: shape/chunk_shape do "
                         "not match dims",
                         pszName, a.name.c_str(), l.level);
                return false;
            }
            for (auto c : l.chunk)
            {
                if (c == 0 || c > (1U << 30))
                {
                    CPLError(CE_Failure, CPLE_AppDefined,
                             "CRI: %s: array %s level %d: invalid chunk_shape",
                             pszName, a.name.c_str(), l.level);
                    return false;
                }
            }
            uint64_t nChunkBytes = a.itemSize;
            for (auto c : l.chunk)
            {
                nChunkBytes *= c;
                if (nChunkBytes > (static_cast<uint64_t>(1) << 31))
                {
                    CPLError(CE_Failure, CPLE_NotSupported,
                             "CRI: %s: array %s level %d: chunks larger than "
                             "2 GB are not supported",
                             pszName, a.name.c_str(), l.level);
                    return false;
                }
            }
            const auto codec = ljs.GetArray("codec");
            for (int k = 0; codec.IsValid() && k < codec.Size(); ++k)
            {
                CodecStep s;
                s.name = codec[k].GetString("name");
                s.predictor = codec[k].GetInteger("predictor", s.name == "tiff_predictor" ? 0 : 1);
                s.samples = std::max(1, codec[k].GetInteger("samples", 1));
                s.elementSize = codec[k].GetInteger("element_size", 0);
                s.framing = codec[k].GetString("framing", "numcodecs");
                s.colorspace = codec[k].GetString("colorspace");
                s.tablesB64 = codec[k].GetString("tables");
                s.bits = codec[k].GetInteger("bits", 0);
                l.codec.push_back(s);
            }
            if (codec.IsValid())
                l.codecJSON = codec.Format(CPLJSONObject::PrettyFormat::Plain);
            else
                l.codecJSON = "[]";
            const auto gt = ljs.GetArray("geotransform");
            if (gt.IsValid() && gt.Size() == 6)
            {
                l.hasGeoTransform = true;
                for (int k = 0; k < 6; ++k)
                    l.gt[k] = gt[k].ToDouble();
            }
            a.levels.push_back(l);
        }
        if (a.levels.empty())
        {
            CPLError(CE_Failure, CPLE_AppDefined,
                     "CRI: %s: array %s has no levels", pszName,
                     a.name.c_str());
            return false;
        }
        std::sort(a.levels.begin(), a.levels.end(),
                  [](const Level &x, const Level &y)
                  { return x.level < y.level; });
        index.arrays.push_back(std::move(a));
    }

    const CPLJSONObject crs = root.GetObj("crs");
    if (crs.IsValid() && crs.GetType() == CPLJSONObject::Type::Object)
    {
        OGRSpatialReference srs;
        bool ok = false;
        const std::string wkt = crs.GetString("wkt");
        const auto projjson = crs.GetObj("projjson");
        const int epsg = crs.GetInteger("epsg", 0);
        if (!wkt.empty())
        {
            // Kept as written; PROJ parses it when an array's SRS is asked
            // for (parsing costs more than the rest of the open).
            index.crsWkt = wkt;
            return true;
        }
        if (!ok && projjson.IsValid() &&
            projjson.GetType() == CPLJSONObject::Type::Object)
            ok = srs.SetFromUserInput(
                     projjson.Format(CPLJSONObject::PrettyFormat::Plain)
                         .c_str()) == OGRERR_NONE;
        if (!ok && epsg > 0)
            ok = srs.importFromEPSG(epsg) == OGRERR_NONE;
        if (ok)
        {
            char *pszWKT = nullptr;
            const char *const apszOptions[] = {"FORMAT=WKT2_2019", nullptr};
            srs.exportToWkt(&pszWKT, apszOptions);
            index.crsWkt = pszWKT ? pszWKT : "";
            CPLFree(pszWKT);
        }
        else
        {
            CPLError(CE_Warning, CPLE_AppDefined,
                     "CRI: %s: the 'crs' entry could not be interpreted; the "
                     "arrays have no CRS",
                     pszName);
        }
    }
    return true;
}

std::string ResolvePath(const Index &index, const std::string &path)
{
    auto toVSI = [](const std::string &p) -> std::string
    {
        if (STARTS_WITH(p.c_str(), "s3://"))
            return "/vsis3/" + p.substr(5);
        if (STARTS_WITH(p.c_str(), "gs://"))
            return "/vsigs/" + p.substr(5);
        if (STARTS_WITH(p.c_str(), "az://"))
            return "/vsiaz/" + p.substr(5);
        if (STARTS_WITH(p.c_str(), "http://") ||
            STARTS_WITH(p.c_str(), "https://"))
            return "/vsicurl/" + p;
        if (STARTS_WITH(p.c_str(), "file://"))
            return p.substr(7);
        return p;
    };
    const bool absolute = path.find("://") != std::string::npos ||
                          (!path.empty() && path[0] == '/');
    if (absolute)
        return toVSI(path);
    if (!index.base.empty())
    {
        std::string b = index.base;
        if (b.back() != '/')
            b += '/';
        return toVSI(b + path);
    }
    return CPLFormFilenameSafe(index.indexDir.c_str(), path.c_str(), nullptr);
}

}  // namespace cri

namespace cri
{

namespace
{

/** Just enough of Thrift's compact protocol to walk a Parquet FileMetaData. */
class ThriftReader
{
  public:
    ThriftReader(const GByte *p, size_t n) : m_p(p), m_end(p + n)
    {
    }
    bool ok() const
    {
        return m_ok;
    }

    uint64_t Varint()
    {
        uint64_t v = 0;
        int shift = 0;
        while (m_p < m_end && shift < 64)
        {
            const GByte b = *m_p++;
            v |= static_cast<uint64_t>(b & 0x7f) << shift;
            if (!(b & 0x80))
                return v;
            shift += 7;
        }
        m_ok = false;
        return 0;
    }
    int64_t Zigzag()
    {
        const uint64_t v = Varint();
        return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
    }
    bool Binary(const GByte *&p, size_t &n)
    {
        n = static_cast<size_t>(Varint());
        if (!m_ok || n > static_cast<size_t>(m_end - m_p))
            return m_ok = false;
        p = m_p;
        m_p += n;
        return true;
    }
    /** Field header: false at STOP. */
    bool Field(int &id, int &type, int &lastId)
    {
        if (m_p >= m_end)
            return m_ok = false;
        const GByte b = *m_p++;
        if (b == 0)
            return false;
        type = b & 0x0f;
        const int delta = b >> 4;
        id = delta ? lastId + delta : static_cast<int>(Zigzag());
        lastId = id;
        return m_ok;
    }
    void ListHeader(int &elemType, size_t &size)
    {
        if (m_p >= m_end)
        {
            m_ok = false;
            return;
        }
        const GByte b = *m_p++;
        elemType = b & 0x0f;
        size = b >> 4;
        if (size == 15)
            size = static_cast<size_t>(Varint());
    }
    void Skip(int type, int depth = 0)
    {
        if (depth > 64)
        {
            m_ok = false;
            return;
        }
        switch (type)
        {
            case 1:  // true
            case 2:  // false
                break;
            case 3:  // byte
                m_p < m_end ? void(++m_p) : void(m_ok = false);
                break;
            case 4:  // i16
            case 5:  // i32
            case 6:  // i64
                Varint();
                break;
            case 7:  // double
                if (m_end - m_p < 8)
                    m_ok = false;
                else
                    m_p += 8;
                break;
            case 8:  // binary
            {
                const GByte *p;
                size_t n;
                Binary(p, n);
                break;
            }
            case 9:   // list
            case 10:  // set
            {
                int et;
                size_t n;
                ListHeader(et, n);
                for (size_t i = 0; i < n && m_ok; ++i)
                    Skip(et, depth + 1);
                break;
            }
            case 11:  // map
            {
                const size_t n = static_cast<size_t>(Varint());
                if (n == 0)
                    break;
                if (m_p >= m_end)
                {
                    m_ok = false;
                    break;
                }
                const GByte kv = *m_p++;
                for (size_t i = 0; i < n && m_ok; ++i)
                {
                    Skip(kv >> 4, depth + 1);
                    Skip(kv & 0x0f, depth + 1);
                }
                break;
            }
            case 12:  // struct
            {
                int id, t, last = 0;
                while (m_ok && Field(id, t, last))
                    Skip(t, depth + 1);
                break;
            }
            default:
                m_ok = false;
        }
    }

  private:
    const GByte *m_p;
    const GByte *m_end;
    bool m_ok = true;
};

}  // namespace

bool ReadParquetKeyValue(const std::string &path, const std::string &key,
                         std::string &value)
{
    VSILFILE *fp = VSIFOpenL(path.c_str(), "rb");
    if (!fp)
        return false;
    GByte tail[8];
    bool ok = VSIFSeekL(fp, 0, SEEK_END) == 0;
    const vsi_l_offset size = VSIFTellL(fp);
    ok = ok && size >= 12 && VSIFSeekL(fp, size - 8, SEEK_SET) == 0 &&
         VSIFReadL(tail, 1, 8, fp) == 8 && memcmp(tail + 4, "PAR1", 4) == 0;
    uint32_t footerLen = 0;
    if (ok)
    {
        memcpy(&footerLen, tail, 4);
        CPL_LSBPTR32(&footerLen);
        ok = footerLen > 0 && footerLen <= size - 12;
    }
    std::vector<GByte> footer;
    if (ok)
    {
        footer.resize(footerLen);
        ok = VSIFSeekL(fp, size - 8 - footerLen, SEEK_SET) == 0 &&
             VSIFReadL(footer.data(), 1, footerLen, fp) == footerLen;
    }
    VSIFCloseL(fp);
    if (!ok)
        return false;
    ThriftReader r(footer.data(), footer.size());
    int id, type, last = 0;
    while (r.ok() && r.Field(id, type, last))
    {
        if (id != 5 || type != 9)  // FileMetaData.key_value_metadata
        {
            r.Skip(type);
            continue;
        }
        int et;
        size_t n;
        r.ListHeader(et, n);
        for (size_t i = 0; i < n && r.ok(); ++i)
        {
            std::string k, v;
            bool hasV = false;
            int fid, ft, flast = 0;
            while (r.ok() && r.Field(fid, ft, flast))
            {
                const GByte *p;
                size_t len;
                if ((fid == 1 || fid == 2) && ft == 8 && r.Binary(p, len))
                {
                    if (fid == 1)
                        k.assign(reinterpret_cast<const char *>(p), len);
                    else
                    {
                        v.assign(reinterpret_cast<const char *>(p), len);
                        hasV = true;
                    }
                }
                else
                    r.Skip(ft);
            }
            if (r.ok() && k == key && hasV)
            {
                value = std::move(v);
                return true;
            }
        }
        return false;
    }
    return false;
}

}  // namespace cri
