// Chunk rows: read through OGR (the Parquet driver, or GeoPackage) with an
// attribute filter on (variable, level, cj ranges) — the Parquet driver turns
// it into row-group selection from the column statistics — and streamed as
// Arrow arrays (OGR_L_GetArrowStream), not one OGRFeature per row. Every box
// of chunks queried is remembered with its rows, so a repeated or contained
// request (a time series at one pixel, GetRawBlockInfo over chunks already
// read) is answered from memory.
#include "cri.h"
#include "cri_parquet.h"

#include "ogr_recordbatch.h"

#include <cstring>

namespace cri
{

namespace
{

/** Reads one column of an Arrow C array (integers, strings, binary, and
 * dictionary-encoded strings). */
struct Column
{
    const ArrowSchema *schema = nullptr;
    const ArrowArray *array = nullptr;

    bool valid() const
    {
        return schema != nullptr && array != nullptr;
    }

    bool IsNull(int64_t i) const
    {
        const int64_t j = i + array->offset;
        if (array->null_count == 0 || array->buffers[0] == nullptr)
            return false;
        const auto *bits = static_cast<const uint8_t *>(array->buffers[0]);
        return (bits[j >> 3] & (1 << (j & 7))) == 0;
    }

    static bool IntAt(const char *fmt, const void *buf, int64_t j, int64_t &v)
    {
        switch (fmt[0])
        {
            case 'c':
                v = static_cast<const int8_t *>(buf)[j];
                return true;
            case 'C':
                v = static_cast<const uint8_t *>(buf)[j];
                return true;
            case 's':
                v = static_cast<const int16_t *>(buf)[j];
                return true;
            case 'S':
                v = static_cast<const uint16_t *>(buf)[j];
                return true;
            case 'i':
                v = static_cast<const int32_t *>(buf)[j];
                return true;
            case 'I':
                v = static_cast<const uint32_t *>(buf)[j];
                return true;
            case 'l':
                v = static_cast<const int64_t *>(buf)[j];
                return true;
            case 'L':
                v = static_cast<int64_t>(static_cast<const uint64_t *>(buf)[j]);
                return true;
            default:
                return false;
        }
    }

    /** A double of a (non-null) row; false when null or not a double. */
    bool Double(int64_t i, double &v) const
    {
        if (!valid() || IsNull(i) || strcmp(schema->format, "g") != 0)
            return false;
        v = static_cast<const double *>(array->buffers[1])[i + array->offset];
        return true;
    }

    /** The child `name` of a struct column (offsets of a struct and its
     * children add up). */
    Column Child(const char *name, int64_t &offset) const
    {
        Column c;
        offset = array->offset;
        for (int64_t k = 0; k < schema->n_children; ++k)
        {
            if (EQUAL(schema->children[k]->name, name))
            {
                c.schema = schema->children[k];
                c.array = array->children[k];
            }
        }
        return c;
    }

    bool Int(int64_t i, int64_t &v) const
    {
        if (schema->dictionary)
            return false;
        return IntAt(schema->format, array->buffers[1], i + array->offset, v);
    }

    static bool BytesAt(const ArrowSchema *s, const ArrowArray *a, int64_t j,
                        const char *&p, size_t &n)
    {
        const char f = s->format[0];
        if ((f == 'u' || f == 'z') && s->format[1] == 0)
        {
            const auto *off = static_cast<const int32_t *>(a->buffers[1]);
            p = static_cast<const char *>(a->buffers[2]) + off[j];
            n = static_cast<size_t>(off[j + 1] - off[j]);
            return true;
        }
        if ((f == 'U' || f == 'Z') && s->format[1] == 0)
        {
            const auto *off = static_cast<const int64_t *>(a->buffers[1]);
            p = static_cast<const char *>(a->buffers[2]) + off[j];
            n = static_cast<size_t>(off[j + 1] - off[j]);
            return true;
        }
        return false;
    }

    /** Bytes of a string/binary value; for a dictionary column, also the
     * dictionary index (else -1). */
    bool Bytes(int64_t i, const char *&p, size_t &n, int64_t &dictIdx) const
    {
        dictIdx = -1;
        if (schema->dictionary)
        {
            if (!IntAt(schema->format, array->buffers[1], i + array->offset,
                       dictIdx))
                return false;
            const ArrowArray *d = array->dictionary;
            if (dictIdx < 0 || dictIdx >= d->length)
                return false;
            return BytesAt(schema->dictionary, d, dictIdx + d->offset, p, n);
        }
        return BytesAt(schema, array, i + array->offset, p, n);
    }
};

}  // namespace

ChunkTable::ChunkTable(std::shared_ptr<const Index> index,
                       const std::string &path,
                       std::shared_ptr<const SpatialFilter> filter)
    : m_indexHolder(std::move(index)), m_index(*m_indexHolder),
      m_filter(std::move(filter)), m_poDS(nullptr), m_poLayer(nullptr),
      m_lazyPath(path)
{
}

bool ChunkTable::EnsureOpen()
{
    if (m_poLayer || m_direct)
        return true;
#ifdef CRI_HAVE_PARQUET
    if (!m_directTried && !m_lazyPath.empty())
    {
        m_directTried = true;
        std::string error;
        auto direct = ParquetRowGroups::Open(m_lazyPath, m_index.K,
                                             m_filter != nullptr, error);
        if (direct)
        {
            CPLDebug("CRI", "%s: direct row-group reader (%d row groups)",
                     m_lazyPath.c_str(), direct->GroupCount());
            m_direct = std::move(direct);
            return true;
        }
        CPLDebug("CRI", "%s: reading rows through OGR (%s)",
                 m_lazyPath.c_str(), error.c_str());
    }
#endif
    const char *const apszDrivers[] = {"Parquet", nullptr};
    m_poDS.reset(GDALDataset::Open(
        m_lazyPath.c_str(),
        GDAL_OF_VECTOR | GDAL_OF_READONLY | GDAL_OF_INTERNAL |
            GDAL_OF_VERBOSE_ERROR,
        apszDrivers, nullptr, nullptr));
    if (m_poDS)
        m_poLayer = m_poDS->GetLayer(0);
    if (!m_poLayer)
    {
        CPLError(CE_Failure, CPLE_OpenFailed,
                 "CRI: cannot open the chunks table of %s through GDAL's "
                 "Parquet driver",
                 m_lazyPath.c_str());
        m_poDS.reset();
        return false;
    }
    Setup();
    return true;
}

ChunkTable::ChunkTable(std::shared_ptr<const Index> index,
                       GDALDataset *poVectorDS, OGRLayer *poLayer,
                       std::shared_ptr<const SpatialFilter> filter)
    : m_indexHolder(std::move(index)), m_index(*m_indexHolder),
      m_filter(std::move(filter)), m_poDS(poVectorDS), m_poLayer(poLayer)
{
    Setup();
}

bool ChunkTable::HasFootprints()
{
    std::lock_guard<std::mutex> lock(m_mutex);
    if (!EnsureOpen())
        return false;
#ifdef CRI_HAVE_PARQUET
    if (m_direct)
        return m_direct->HasFootprints();
#endif
    const OGRFeatureDefn *defn = m_poLayer->GetLayerDefn();
    return defn->GetGeomFieldCount() > 0 || defn->GetFieldIndex("geometry") >= 0;
}

void ChunkTable::Setup()
{
    // Columns the reader does not use are not decoded.
    const OGRFeatureDefn *defn = m_poLayer->GetLayerDefn();
    CPLStringList ignored;
    for (int i = 0; i < defn->GetFieldCount(); ++i)
    {
        const char *name = defn->GetFieldDefn(i)->GetNameRef();
        const bool used =
            EQUAL(name, "variable") || EQUAL(name, "level") ||
            EQUAL(name, "path") || EQUAL(name, "offset") ||
            EQUAL(name, "length") || EQUAL(name, "raw") ||
            EQUAL(name, "skip") ||
            (name[0] == 'c' && name[1] >= '0' && name[1] <= '9') ||
            (m_filter && (EQUAL(name, "geometry") || EQUAL(name, "bbox")));
        if (!used)
            ignored.AddString(name);
    }
    // The footprint is read only to test it against a spatial filter (on the
    // rows: a filter on the layer would drop the rows, and GetRawBlockInfo
    // still gives the references of chunks outside).
    const bool keepGeometry = m_filter != nullptr;
    for (int i = 0; i < defn->GetGeomFieldCount() && !keepGeometry; ++i)
        ignored.AddString(defn->GetGeomFieldDefn(i)->GetNameRef());
    if (defn->GetGeomFieldCount() > 0 && !keepGeometry)
        ignored.AddString("OGR_GEOMETRY");
    ignored.AddString("OGR_STYLE");
    m_poLayer->SetIgnoredFields(ignored.List());

    // A dictionary-typed `variable` column is an integer field with a coded
    // domain in OGR: filter on the code.
    const int iVar = defn->GetFieldIndex("variable");
    if (iVar >= 0)
    {
        const OGRFieldDefn *fd = defn->GetFieldDefn(iVar);
        if (fd->GetType() != OFTString && !fd->GetDomainName().empty())
        {
            const OGRFieldDomain *dom =
                m_poDS->GetFieldDomain(fd->GetDomainName());
            if (dom && dom->GetDomainType() == OFDT_CODED)
            {
                m_variableIsCoded = true;
                const OGRCodedValue *cv =
                    static_cast<const OGRCodedFieldDomain *>(dom)
                        ->GetEnumeration();
                for (; cv && cv->pszCode; ++cv)
                    if (cv->pszValue)
                        m_variableCodes[cv->pszValue] = cv->pszCode;
            }
        }
    }
}

ChunkTable::~ChunkTable()
{
    // key=value pairs, one line: what tests count and users tune by
    // (CPL_DEBUG=CRI).
    const ReadStats &st = m_stats;
    if (st.queries == 0)
        return;  // opened, never read (GDAL opens some datasets twice)
    CPLDebug("CRI",
             "read summary: %s: row_groups_read=" CPL_FRMT_GIB
             " row_groups_pruned_bbox=" CPL_FRMT_GIB " rows_loaded=" CPL_FRMT_GIB
             " rows_kept=" CPL_FRMT_GIB " rows_outside_bbox=" CPL_FRMT_GIB
             " chunks_fetched=" CPL_FRMT_GIB " bytes_fetched=" CPL_FRMT_GIB
             " chunks_decoded=" CPL_FRMT_GIB " chunks_cached=" CPL_FRMT_GIB
             "%s%s",
             m_index.indexPath.c_str(),
             static_cast<GIntBig>(st.rowGroupsRead.load()),
             static_cast<GIntBig>(st.rowGroupsPrunedBBox.load()),
             static_cast<GIntBig>(st.rowsLoaded.load()),
             static_cast<GIntBig>(st.rowsKept.load()),
             static_cast<GIntBig>(st.rowsOutside.load()),
             static_cast<GIntBig>(st.chunksFetched.load()),
             static_cast<GIntBig>(st.bytesFetched.load()),
             static_cast<GIntBig>(st.chunksDecoded.load()),
             static_cast<GIntBig>(st.chunksCached.load()),
             m_filter ? " " : "",
             m_filter ? m_filter->Description().c_str() : "");
}

std::string ChunkTable::GetPath(int idx) const
{
    std::lock_guard<std::mutex> lock(m_mutex);
    return idx >= 0 && static_cast<size_t>(idx) < m_resolved.size()
               ? m_resolved[idx]
               : std::string();
}

std::string ChunkTable::GetStoredPath(int idx) const
{
    std::lock_guard<std::mutex> lock(m_mutex);
    return idx >= 0 && static_cast<size_t>(idx) < m_paths.size()
               ? m_paths[idx]
               : std::string();
}

int ChunkTable::InternPath(const char *p, size_t n)
{
    std::string s(p, n);
    auto it = m_pathIdx.find(s);
    if (it != m_pathIdx.end())
        return it->second;
    const int idx = static_cast<int>(m_paths.size());
    m_paths.push_back(s);
    m_resolved.push_back(ResolvePath(m_index, s));
    m_pathIdx.emplace(std::move(s), idx);
    return idx;
}

bool ChunkTable::Lookup(const Array &array, int level, const Coords &cmin,
                        const Coords &cmax,
                        std::vector<std::pair<Coords, ChunkRef>> &out)
{
    out.clear();
    std::lock_guard<std::mutex> lock(m_mutex);
    if (!EnsureOpen())
        return false;
    Cache &cache = m_cache[{array.name, level}];
    const int n = cmin.n;
    auto contains = [n](const Box &b, const Coords &lo, const Coords &hi)
    {
        for (int j = 0; j < n; ++j)
            if (lo.c[j] < b.lo.c[j] || hi.c[j] > b.hi.c[j])
                return false;
        return true;
    };
    bool covered = false;
    for (const auto &b : cache.boxes)
    {
        if (contains(b, cmin, cmax))
        {
            covered = true;
            break;
        }
    }
    if (!covered)
    {
        // Bound the memory of the lookup cache.
        const size_t maxRows = static_cast<size_t>(
            CPLAtoGIntBig(CPLGetConfigOption("CRI_LOOKUP_CACHE_ROWS", "4000000")));
        if (cache.boxes.size() > 100000 || cache.rows.size() > maxRows)
        {
            cache.boxes.clear();
            cache.rows.clear();
        }
        // A single chunk (GetRawBlockInfo, a one-pixel read) is looked up
        // with its neighbours: whole steps of the outer dimension around it,
        // up to ~64k rows, so random lookups cost one query per few hundred
        // steps rather than one each (each query has a fixed cost: the
        // Parquet driver selects row groups from every group's statistics).
        Coords qlo = cmin, qhi = cmax;
        bool single = n >= 2;
        for (int j = 0; j < n && single; ++j)
            single = cmin.c[j] == cmax.c[j];
        const Level *lv = nullptr;
        for (const auto &l : array.levels)
            if (l.level == level)
                lv = &l;
        if (single && lv && static_cast<int>(lv->shape.size()) == n)
        {
            uint64_t inner = 1;
            for (int j = 1; j < n; ++j)
                inner *= (lv->shape[j] + lv->chunk[j] - 1) / lv->chunk[j];
            const int64_t outer = static_cast<int64_t>(
                (lv->shape[0] + lv->chunk[0] - 1) / lv->chunk[0]);
            // The direct reader has no fixed cost per query (its row-group
            // selection is a scan of plain vectors): one step is enough.
            const int64_t steps =
                m_direct ? 1
                         : std::max<int64_t>(
                               1, static_cast<int64_t>(
                                      65536 / std::max<uint64_t>(inner, 1)));
            if (inner <= 65536)
            {
                qlo.c[0] = cmin.c[0] / steps * steps;
                qhi.c[0] = std::min(outer - 1, qlo.c[0] + steps - 1);
                for (int j = 1; j < n; ++j)
                {
                    qlo.c[j] = 0;
                    qhi.c[j] = static_cast<int64_t>(
                        (lv->shape[j] + lv->chunk[j] - 1) / lv->chunk[j]) - 1;
                }
            }
        }
        if (!Query(array, level, qlo, qhi, cache))
            return false;
        cache.boxes.push_back({qlo, qhi});
    }
    // Enumerate the box when it is small compared with the cached rows;
    // otherwise scan the rows.
    uint64_t nBox = 1;
    for (int j = 0; j < n; ++j)
        nBox *= static_cast<uint64_t>(cmax.c[j] - cmin.c[j] + 1);
    if (nBox <= cache.rows.size() * 4 + 16)
    {
        Coords c = cmin;
        do
        {
            auto it = cache.rows.find(c);
            if (it != cache.rows.end())
                out.emplace_back(c, it->second);
        } while (NextInBox(c, cmin, cmax));
    }
    else
    {
        for (const auto &kv : cache.rows)
        {
            bool in = true;
            for (int j = 0; j < n && in; ++j)
                in = kv.first.c[j] >= cmin.c[j] && kv.first.c[j] <= cmax.c[j];
            if (in)
                out.emplace_back(kv.first, kv.second);
        }
    }
    return true;
}

bool ChunkTable::QueryDirect(const Array &array, int level, const Coords &lo,
                             const Coords &hi, Cache &cache)
{
#ifdef CRI_HAVE_PARQUET
    int pruned = 0;
    const std::vector<int> groups =
        m_direct->Select(array.name, level, lo, hi, m_filter.get(), pruned);
    CPLDebug("CRI", "query %s level %d: %d of %d row groups (%d ruled out by bbox statistics)",
             array.name.c_str(), level, static_cast<int>(groups.size()),
             m_direct->GroupCount(), pruned);
    m_stats.rowGroupsRead += static_cast<int64_t>(groups.size());
    m_stats.rowGroupsPrunedBBox += pruned;
    std::string error;
    const bool ok = m_direct->Read(
        groups,
        [&](const ArrowSchema &schema, const ArrowArray &batch)
        { return ConsumeBatch(array, level, lo, hi, schema, batch, true, cache); },
        error);
    if (!ok && !error.empty())
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: reading the chunks table failed: %s",
                 m_index.indexPath.c_str(), error.c_str());
    return ok;
#else
    return false;
#endif
}

bool ChunkTable::Query(const Array &array, int level, const Coords &lo,
                       const Coords &hi, Cache &cache)
{
    ++m_stats.queries;
    if (m_direct)
        return QueryDirect(array, level, lo, hi, cache);
    std::string filter;
    if (m_variableIsCoded)
    {
        auto it = m_variableCodes.find(array.name);
        if (it == m_variableCodes.end())
            return true;  // no row for this variable at all
        filter = "variable = " + it->second;
    }
    else
    {
        std::string esc;
        for (char ch : array.name)
        {
            esc += ch;
            if (ch == '\'')
                esc += '\'';
        }
        filter = "variable = '" + esc + "'";
    }
    filter += CPLSPrintf(" AND level = %d", level);
    for (int j = 0; j < lo.n; ++j)
    {
        if (lo.c[j] == hi.c[j])
            filter += CPLSPrintf(" AND c%d = " CPL_FRMT_GIB, j,
                                 static_cast<GIntBig>(lo.c[j]));
        else
            filter += CPLSPrintf(" AND c%d >= " CPL_FRMT_GIB " AND c%d <= " CPL_FRMT_GIB,
                                 j, static_cast<GIntBig>(lo.c[j]), j,
                                 static_cast<GIntBig>(hi.c[j]));
    }
    if (m_poLayer->SetAttributeFilter(filter.c_str()) != OGRERR_NONE)
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: the chunks table rejected the filter %s",
                 m_index.indexPath.c_str(), filter.c_str());
        return false;
    }
    CPLDebug("CRI", "query: %s", filter.c_str());

    ArrowArrayStream stream;
    memset(&stream, 0, sizeof(stream));
    CPLStringList opts;
    opts.SetNameValue("INCLUDE_FID", "NO");
    opts.SetNameValue("MAX_FEATURES_IN_BATCH", "65536");
    if (!m_poLayer->GetArrowStream(&stream, opts.List()))
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: cannot stream the chunks table",
                 m_index.indexPath.c_str());
        return false;
    }
    ArrowSchema schema;
    memset(&schema, 0, sizeof(schema));
    bool ok = stream.get_schema(&stream, &schema) == 0;
    while (ok)
    {
        ArrowArray batch;
        memset(&batch, 0, sizeof(batch));
        if (stream.get_next(&stream, &batch) != 0)
        {
            const char *err = stream.get_last_error(&stream);
            CPLError(CE_Failure, CPLE_AppDefined,
                     "CRI: %s: reading the chunks table failed: %s",
                     m_index.indexPath.c_str(), err ? err : "");
            ok = false;
            break;
        }
        if (batch.release == nullptr)
            break;
        ok = ConsumeBatch(array, level, lo, hi, schema, batch, false, cache);
        batch.release(&batch);
    }
    if (schema.release)
        schema.release(&schema);
    stream.release(&stream);
    m_poLayer->SetAttributeFilter(nullptr);
    return ok;
}

bool ChunkTable::ConsumeBatch(const Array &array, int level, const Coords &lo,
                              const Coords &hi, const ArrowSchema &schema,
                              const ArrowArray &batch, bool filter,
                              Cache &cache)
{
    bool ok = true;
    int iVar = -1, iLevel = -1;
    for (int64_t k = 0; k < schema.n_children; ++k)
    {
        if (EQUAL(schema.children[k]->name, "variable"))
            iVar = static_cast<int>(k);
        else if (EQUAL(schema.children[k]->name, "level"))
            iLevel = static_cast<int>(k);
    }
    if (filter && (iVar < 0 || iLevel < 0))
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: the chunks table lacks variable/level columns",
                 m_index.indexPath.c_str());
        return false;
    }
    int iC[MAX_DIMS];
    for (int j = 0; j < MAX_DIMS; ++j)
        iC[j] = -1;
    int iPath = -1, iOffset = -1, iLength = -1, iRaw = -1, iSkip = -1;
    int iGeom = -1, iBBox = -1;
    {
        for (int64_t k = 0; k < schema.n_children; ++k)
        {
            const char *name = schema.children[k]->name;
            if (EQUAL(name, "geometry"))
                iGeom = static_cast<int>(k);
            else if (EQUAL(name, "bbox") &&
                     strcmp(schema.children[k]->format, "+s") == 0)
                iBBox = static_cast<int>(k);
            else if (EQUAL(name, "path"))
                iPath = static_cast<int>(k);
            else if (EQUAL(name, "offset"))
                iOffset = static_cast<int>(k);
            else if (EQUAL(name, "length"))
                iLength = static_cast<int>(k);
            else if (EQUAL(name, "raw"))
                iRaw = static_cast<int>(k);
            else if (EQUAL(name, "skip"))
                iSkip = static_cast<int>(k);
            else if (name[0] == 'c' && name[1] >= '0' && name[1] <= '9')
            {
                const int j = atoi(name + 1);
                if (j >= 0 && j < MAX_DIMS)
                    iC[j] = static_cast<int>(k);
            }
        }
        for (int j = 0; j < lo.n; ++j)
        {
            if (iC[j] < 0)
            {
                CPLError(CE_Failure, CPLE_AppDefined,
                         "CRI: %s: the chunks table has no column c%d",
                         m_index.indexPath.c_str(), j);
                ok = false;
            }
        }
        if (ok && (iOffset < 0 || iLength < 0 || (iPath < 0 && iRaw < 0)))
        {
            CPLError(CE_Failure, CPLE_AppDefined,
                     "CRI: %s: the chunks table lacks path/offset/length/raw "
                     "columns",
                     m_index.indexPath.c_str());
            ok = false;
        }
    }
    if (!ok)
        return false;
    {
        auto col = [&](int k)
        {
            Column c;
            if (k >= 0)
            {
                c.schema = schema.children[k];
                c.array = batch.children[k];
            }
            return c;
        };
        Column cs[MAX_DIMS];
        for (int j = 0; j < lo.n; ++j)
            cs[j] = col(iC[j]);
        const Column cPath = col(iPath), cOff = col(iOffset),
                     cLen = col(iLength), cRaw = col(iRaw), cSkip = col(iSkip);
        std::map<int64_t, int> dictToPath;
        const Column cVar = col(iVar), cLevel = col(iLevel);
        std::map<int64_t, bool> dictIsArray;  // dictionary code -> name matches
        // The spatial filter: the bbox struct's fields pre-test, the WKB
        // footprint decides (once per dictionary value).
        const SpatialFilter *spatial = m_filter.get();
        const Column cGeom = col(iGeom), cBBox = col(iBBox);
        Column cBox[4];
        int64_t boxOffset = 0;
        if (spatial && cBBox.valid())
        {
            const char *const names[4] = {"xmin", "ymin", "xmax", "ymax"};
            for (int k = 0; k < 4; ++k)
                cBox[k] = cBBox.Child(names[k], boxOffset);
        }
        std::map<int64_t, bool> dictMeets;  // geometry dictionary code -> meets
        auto outsideFilter = [&](int64_t r)
        {
            if (!spatial || !cGeom.valid() || cGeom.IsNull(r))
                return false;  // no footprint: where it lies is unknown; read
            if (cBBox.valid() && !cBBox.IsNull(r))
            {
                double b[4];
                bool have = true;
                for (int k = 0; k < 4 && have; ++k)
                    have = cBox[k].Double(r + boxOffset, b[k]);
                if (have && !spatial->EnvelopeMeets(b[0], b[1], b[2], b[3]))
                    return true;
            }
            const char *p = nullptr;
            size_t np = 0;
            int64_t di = -1;
            if (!cGeom.Bytes(r, p, np, di))
                return false;
            if (di >= 0)
            {
                auto it = dictMeets.find(di);
                if (it == dictMeets.end())
                    it = dictMeets
                             .emplace(di, spatial->Meets(
                                              reinterpret_cast<const GByte *>(p), np))
                             .first;
                return !it->second;
            }
            return !spatial->Meets(reinterpret_cast<const GByte *>(p), np);
        };
        m_stats.rowsLoaded += batch.length;
        for (int64_t r = 0; r < batch.length && ok; ++r)
        {
            if (filter)
            {
                // Rows of the selected row groups outside the query: other
                // arrays, levels, or chunks outside the box.
                const char *p = nullptr;
                size_t np = 0;
                int64_t di = -1, lv = 0;
                if (cVar.IsNull(r) || !cVar.Bytes(r, p, np, di))
                    continue;
                bool same;
                auto it = di >= 0 ? dictIsArray.find(di) : dictIsArray.end();
                if (it != dictIsArray.end())
                    same = it->second;
                else
                {
                    same = np == array.name.size() &&
                           memcmp(p, array.name.data(), np) == 0;
                    if (di >= 0)
                        dictIsArray.emplace(di, same);
                }
                if (!same || cLevel.IsNull(r) || !cLevel.Int(r, lv) || lv != level)
                    continue;
            }
            Coords key;
            key.n = lo.n;
            for (int j = 0; j < lo.n; ++j)
            {
                if (cs[j].IsNull(r) || !cs[j].Int(r, key.c[j]))
                {
                    CPLError(CE_Failure, CPLE_AppDefined,
                             "CRI: %s: array %s: a row has a null or "
                             "non-integer c%d",
                             m_index.indexPath.c_str(), array.name.c_str(), j);
                    ok = false;
                    break;
                }
            }
            if (!ok)
                break;
            if (filter)
            {
                bool in = true;
                for (int j = 0; j < lo.n && in; ++j)
                    in = key.c[j] >= lo.c[j] && key.c[j] <= hi.c[j];
                if (!in)
                    continue;
            }
            ChunkRef ref;
            if (!cOff.Int(r, ref.offset) || !cLen.Int(r, ref.length))
            {
                CPLError(CE_Failure, CPLE_AppDefined,
                         "CRI: %s: offset/length columns are not integers",
                         m_index.indexPath.c_str());
                ok = false;
                break;
            }
            int64_t skip = 0;
            if (cSkip.valid() && !cSkip.IsNull(r) && cSkip.Int(r, skip))
                ref.skip = static_cast<uint32_t>(skip);
            if (cPath.valid() && !cPath.IsNull(r))
            {
                const char *p = nullptr;
                size_t np = 0;
                int64_t di = -1;
                if (!cPath.Bytes(r, p, np, di))
                {
                    CPLError(CE_Failure, CPLE_AppDefined,
                             "CRI: %s: the path column is not a string",
                             m_index.indexPath.c_str());
                    ok = false;
                    break;
                }
                if (di >= 0)
                {
                    auto it = dictToPath.find(di);
                    if (it == dictToPath.end())
                        it = dictToPath.emplace(di, InternPath(p, np)).first;
                    ref.pathIdx = it->second;
                }
                else
                    ref.pathIdx = InternPath(p, np);
            }
            else if (cRaw.valid() && !cRaw.IsNull(r))
            {
                const char *p = nullptr;
                size_t np = 0;
                int64_t di = -1;
                if (!cRaw.Bytes(r, p, np, di))
                {
                    ok = false;
                    break;
                }
                ref.raw = std::make_shared<std::string>(p, np);
                ref.offset = 0;
                ref.length = static_cast<int64_t>(np);
            }
            else
            {
                CPLError(CE_Failure, CPLE_AppDefined,
                         "CRI: %s: array %s: a row has neither path nor raw",
                         m_index.indexPath.c_str(), array.name.c_str());
                ok = false;
                break;
            }
            ref.outside = outsideFilter(r);
            if (ref.outside)
                ++m_stats.rowsOutside;
            ++m_stats.rowsKept;
            cache.rows[key] = std::move(ref);
        }
    }
    return ok;
}

}  // namespace cri
