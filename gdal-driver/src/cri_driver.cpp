// CRI driver: registration, connection strings, open.
//
//   CRI:"<index>"                      the index (multidimensional, or the
//                                      list of variables as subdatasets)
//   CRI:"<index>":<variable>           one variable, every non-spatial
//                                      dimension as bands
//   CRI:"<index>":<variable>:<t>       one variable at time index t (or an
//                                      ISO date)
//   <index>.cri.parquet / .cri.gpkg    the bare path, when recognisable
// Open options VARIABLE, TIME, LEVEL do the same for any of these.
#include "cri.h"

#include "cpl_time.h"

#include <cmath>

namespace
{

constexpr const char *PREFIX = "CRI:";

bool HasCRISuffix(const char *pszName)
{
    const std::string s = CPLString(pszName).tolower();
    auto ends = [&](const char *suf)
    {
        const size_t n = strlen(suf);
        return s.size() >= n && s.compare(s.size() - n, n, suf) == 0;
    };
    return ends(".cri.parquet") || ends(".cri.gpkg");
}

int CRIIdentify(GDALOpenInfo *poOpenInfo)
{
    if (STARTS_WITH_CI(poOpenInfo->pszFilename, PREFIX))
        return TRUE;
    if (!HasCRISuffix(poOpenInfo->pszFilename))
        return FALSE;
    if (poOpenInfo->nHeaderBytes >= 4)
    {
        const char *h = reinterpret_cast<const char *>(poOpenInfo->pabyHeader);
        return STARTS_WITH(h, "PAR1") || STARTS_WITH(h, "SQLite format 3");
    }
    // Remote files without a prefetched header: trust the name.
    return poOpenInfo->fpL == nullptr ? GDAL_IDENTIFY_UNKNOWN : FALSE;
}

struct Connection
{
    std::string path{};
    std::string variable{};
    std::string time{};
    bool prefixed = false;
};

bool ParseConnection(const char *pszName, Connection &c)
{
    if (!STARTS_WITH_CI(pszName, PREFIX))
    {
        c.path = pszName;
        return true;
    }
    c.prefixed = true;
    std::string rest = pszName + strlen(PREFIX);
    std::string tail;
    if (!rest.empty() && rest[0] == '"')
    {
        const size_t q = rest.find('"', 1);
        if (q == std::string::npos)
            return false;
        c.path = rest.substr(1, q - 1);
        tail = rest.substr(q + 1);
        if (!tail.empty() && tail[0] != ':')
            return false;
        if (!tail.empty())
            tail = tail.substr(1);
    }
    else
    {
        // Unquoted: the path runs to the first ':' after the suffix.
        const std::string low = CPLString(rest).tolower();
        size_t end = std::string::npos;
        for (const char *suf : {".cri.parquet", ".cri.gpkg"})
        {
            const size_t p = low.find(suf);
            if (p != std::string::npos)
                end = p + strlen(suf);
        }
        if (end == std::string::npos)
            end = rest.find(':');
        c.path = rest.substr(0, end);
        if (end != std::string::npos && end < rest.size())
        {
            if (rest[end] != ':')
                return false;
            tail = rest.substr(end + 1);
        }
    }
    if (!tail.empty())
    {
        const size_t p = tail.find(':');
        c.variable = tail.substr(0, p);
        if (p != std::string::npos)
            c.time = tail.substr(p + 1);
    }
    return !c.path.empty();
}

/** Seconds since 1970 of an ISO date or date-time "Y-M-D[Th:m:s]" (any
 * one character between date and time) in `unixTime`; returns the number of
 * fields read (fewer than 3: not a date). */
int ParseISOTime(const std::string &text, double &unixTime)
{
    int Y = 0, M = 1, D = 1, h = 0, m = 0;
    double s = 0;
    const int n = sscanf(text.c_str(), "%d-%d-%d%*c%d:%d:%lf", &Y, &M, &D, &h, &m, &s);
    if (n < 3)
        return n;
    struct tm t = {};
    t.tm_year = Y - 1900;
    t.tm_mon = M - 1;
    t.tm_mday = D;
    t.tm_hour = h;
    t.tm_min = m;
    t.tm_sec = static_cast<int>(s);
    unixTime = static_cast<double>(CPLYMDHMSToUnixTime(&t)) + (s - std::floor(s));
    return n;
}

/** Seconds per unit of a CF time unit, and the reference epoch. */
bool ParseCFUnits(const std::string &units, double &secPerUnit, double &epoch)
{
    const CPLStringList toks(CSLTokenizeString2(units.c_str(), " ", 0));
    if (toks.size() < 3 || !EQUAL(toks[1], "since"))
        return false;
    const std::string u = CPLString(toks[0]).tolower();
    if (u.rfind("day", 0) == 0)
        secPerUnit = 86400;
    else if (u.rfind("hour", 0) == 0)
        secPerUnit = 3600;
    else if (u.rfind("min", 0) == 0)
        secPerUnit = 60;
    else if (u.rfind("sec", 0) == 0)
        secPerUnit = 1;
    else
        return false;
    std::string ref = toks[2];
    if (toks.size() >= 4)
        ref += std::string("T") + toks[3];
    return ParseISOTime(ref, epoch) >= 3;
}

/** Index along a time dimension: an integer, or an ISO date/time matched
 * against the dimension's CF values (a date alone matches that day). */
bool ResolveTime(const cri::Index &index, const cri::Dimension &dim,
                 const std::string &value, uint64_t &out)
{
    std::lock_guard<std::recursive_mutex> jsonLock(cri::JSONMutex());
    if (!value.empty() &&
        value.find_first_not_of("0123456789") == std::string::npos)
    {
        out = static_cast<uint64_t>(CPLAtoGIntBig(value.c_str()));
        return true;
    }
    double spu = 0, epoch = 0;
    if (dim.values.empty() || !ParseCFUnits(dim.json.GetString("units"), spu, epoch))
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s: TIME=%s: dimension %s has no CF time values to "
                 "match a date against; give an index",
                 index.indexPath.c_str(), value.c_str(), dim.name.c_str());
        return false;
    }
    double target = 0;
    const int n = ParseISOTime(value, target);
    if (n < 3)
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: TIME=%s is neither an index nor an ISO date",
                 value.c_str());
        return false;
    }
    const double span = n <= 3 ? 86400.0 : 1.0;
    for (size_t i = 0; i < dim.values.size(); ++i)
    {
        const double v = epoch + dim.values[i] * spu;
        if (n <= 3 ? (v >= target && v < target + span)
                   : std::fabs(v - target) < span)
        {
            out = i;
            return true;
        }
    }
    CPLError(CE_Failure, CPLE_AppDefined,
             "CRI: %s: no step of dimension %s at %s",
             index.indexPath.c_str(), dim.name.c_str(), value.c_str());
    return false;
}

std::mutex g_indexCacheMutex;
std::list<std::pair<std::string, std::shared_ptr<cri::Index>>> g_indexCache;

/** Open the index table and parse its `cri` document. */
bool OpenIndex(const Connection &conn,
               const std::shared_ptr<const cri::SpatialFilter> &filter,
               std::shared_ptr<cri::Index> &index,
               std::shared_ptr<cri::ChunkTable> &table)
{
    // Parquet: the `cri` document straight from the footer; the table is
    // opened through OGR on the first chunk lookup, so opening is cheap.
    // Parsed documents are kept (by path, size and modification time): a
    // re-open of an unchanged index skips the footer and the JSON. Only
    // plain data is cached, nothing that needs GDAL at exit.
    VSIStatBufL st;
    std::string key;
    if (VSIStatL(conn.path.c_str(), &st) == 0)
        key = conn.path + CPLSPrintf("|" CPL_FRMT_GUIB "|" CPL_FRMT_GIB,
                                     static_cast<GUIntBig>(st.st_size),
                                     static_cast<GIntBig>(st.st_mtime));
    {
        std::lock_guard<std::mutex> lock(g_indexCacheMutex);
        for (auto it = g_indexCache.begin(); !key.empty() && it != g_indexCache.end(); ++it)
        {
            if (it->first == key)
            {
                index = it->second;
                g_indexCache.splice(g_indexCache.begin(), g_indexCache, it);
                table = std::make_shared<cri::ChunkTable>(index, conn.path, filter);
                return true;
            }
        }
    }
    std::string osJSON;
    if (cri::ReadParquetKeyValue(conn.path, "cri", osJSON))
    {
        index = std::make_shared<cri::Index>();
        if (!cri::ParseIndexJSON(osJSON, conn.path, *index))
            return false;
        table = std::make_shared<cri::ChunkTable>(index, conn.path, filter);
        if (!key.empty())
        {
            std::lock_guard<std::mutex> lock(g_indexCacheMutex);
            g_indexCache.emplace_front(key, index);
            if (g_indexCache.size() > 8)
                g_indexCache.pop_back();
        }
        return true;
    }

    const char *const apszDrivers[] = {"Parquet", "GPKG", nullptr};
    std::unique_ptr<GDALDataset> poVec;
    {
        // A bare path that OGR cannot open is simply not ours.
        std::unique_ptr<CPLErrorStateBackuper> quiet;
        if (!conn.prefixed)
            quiet = std::make_unique<CPLErrorStateBackuper>(CPLQuietErrorHandler);
        poVec.reset(GDALDataset::Open(conn.path.c_str(),
                                      GDAL_OF_VECTOR | GDAL_OF_READONLY |
                                          GDAL_OF_INTERNAL |
                                          (conn.prefixed ? GDAL_OF_VERBOSE_ERROR : 0),
                                      apszDrivers, nullptr, nullptr));
    }
    if (!poVec)
    {
        if (conn.prefixed)
            CPLError(CE_Failure, CPLE_OpenFailed,
                     "CRI: cannot open index %s as Parquet or GeoPackage "
                     "(is GDAL's Parquet driver available?)",
                     conn.path.c_str());
        return false;
    }
    OGRLayer *poLayer = poVec->GetLayerByName("chunks");
    if (!poLayer)
        poLayer = poVec->GetLayer(0);
    const char *pszJSON = nullptr;
    if (poLayer)
    {
        // GetMetadata(), not GetMetadataItem(): the latter truncates values
        // longer than CPLSPrintf's 8000-byte buffer (GDAL 3.13).
        pszJSON = CSLFetchNameValue(poLayer->GetMetadata("_PARQUET_METADATA_"), "cri");
        if (!pszJSON)
            pszJSON = poLayer->GetMetadataItem("cri");
    }
    if (!pszJSON)
        pszJSON = poVec->GetMetadataItem("cri");
    if (!pszJSON)
    {
        if (conn.prefixed)
            CPLError(CE_Failure, CPLE_AppDefined,
                     "CRI: %s is not a CRI index: no 'cri' key in its "
                     "metadata",
                     conn.path.c_str());
        return false;
    }
    index = std::make_shared<cri::Index>();
    if (!cri::ParseIndexJSON(pszJSON, conn.path, *index))
        return false;
    table = std::make_shared<cri::ChunkTable>(index, poVec.release(), poLayer,
                                              filter);
    return true;
}

/** The spatial filter of the BBOX / BBOX_CRS open options, else of the
 * CRI_BBOX / CRI_BBOX_CRS configuration options (nullptr when neither
 * gives a box); false on a bad value. The configuration options reach
 * datasets GDAL reopens by name without the open options: gdalmdimtranslate
 * copies through a multidimensional VRT whose sources are reopened so. */
bool SpatialFilterOption(GDALOpenInfo *poOpenInfo,
                         std::shared_ptr<const cri::SpatialFilter> &filter)
{
    const char *pszBBox = CSLFetchNameValue(poOpenInfo->papszOpenOptions, "BBOX");
    const char *pszCRS = CSLFetchNameValue(poOpenInfo->papszOpenOptions, "BBOX_CRS");
    if (!pszBBox && !pszCRS)
    {
        pszBBox = CPLGetConfigOption("CRI_BBOX", nullptr);
        pszCRS = CPLGetConfigOption("CRI_BBOX_CRS", nullptr);
    }
    if (!pszBBox)
    {
        if (pszCRS)
        {
            CPLError(CE_Failure, CPLE_IllegalArg,
                     "CRI: BBOX_CRS=%s needs a BBOX", pszCRS);
            return false;
        }
        return true;
    }
    std::string error;
    filter = cri::SpatialFilter::Build(pszBBox, pszCRS ? pszCRS : "", error);
    if (!filter)
    {
        CPLError(CE_Failure, CPLE_IllegalArg, "CRI: %s", error.c_str());
        return false;
    }
    return true;
}

/** A raster dataset with no bands listing the variables as subdatasets. */
class CRISubdatasetsDataset final : public GDALDataset
{
};

GDALDataset *CRIOpen(GDALOpenInfo *poOpenInfo)
{
    if (!CRIIdentify(poOpenInfo) || poOpenInfo->eAccess == GA_Update)
        return nullptr;
    Connection conn;
    if (!ParseConnection(poOpenInfo->pszFilename, conn))
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: cannot parse '%s' (expected CRI:\"<index>\"[:variable[:time]])",
                 poOpenInfo->pszFilename);
        return nullptr;
    }
    std::shared_ptr<const cri::SpatialFilter> filter;
    if (!SpatialFilterOption(poOpenInfo, filter))
        return nullptr;
    std::shared_ptr<cri::Index> index;
    std::shared_ptr<cri::ChunkTable> table;
    if (!OpenIndex(conn, filter, index, table))
        return nullptr;
    if (filter && !table->HasFootprints())
    {
        CPLError(CE_Failure, CPLE_AppDefined,
                 "CRI: %s has no chunk footprints (`geometry` and `bbox` "
                 "columns) for BBOX: write the index with footprints "
                 "(output kind `footprints`)",
                 conn.path.c_str());
        return nullptr;
    }

    if (poOpenInfo->nOpenFlags & GDAL_OF_MULTIDIM_RASTER)
        return cri::OpenMultiDim(index, table, poOpenInfo->pszFilename);

    std::string variable = conn.variable;
    if (const char *v = CSLFetchNameValue(poOpenInfo->papszOpenOptions, "VARIABLE"))
        variable = v;
    std::string time = conn.time;
    if (const char *v = CSLFetchNameValue(poOpenInfo->papszOpenOptions, "TIME"))
        time = v;
    const int nLevel = atoi(CSLFetchNameValueDef(poOpenInfo->papszOpenOptions, "LEVEL", "0"));

    std::vector<const cri::Array *> dataArrays;
    for (const auto &a : index->arrays)
        if (a.role != "coordinate" && a.dims.size() >= 2)
            dataArrays.push_back(&a);
    if (variable.empty())
    {
        if (dataArrays.size() == 1)
            variable = dataArrays[0]->name;
        else
        {
            auto ds = new CRISubdatasetsDataset();
            ds->SetDescription(poOpenInfo->pszFilename);
            int i = 1;
            for (const auto *a : dataArrays)
            {
                const std::string name = CPLSPrintf("CRI:\"%s\":%s", conn.path.c_str(), a->name.c_str());
                ds->SetMetadataItem(CPLSPrintf("SUBDATASET_%d_NAME", i), name.c_str(), "SUBDATASETS");
                std::string dimsDesc;
                for (size_t d = 0; d < a->dims.size(); ++d)
                    dimsDesc += (d ? "x" : "") + std::to_string(a->levels[0].shape[d]);
                ds->SetMetadataItem(CPLSPrintf("SUBDATASET_%d_DESC", i),
                                    CPLSPrintf("[%s] %s (%s)", dimsDesc.c_str(), a->name.c_str(), a->dtype.c_str()),
                                    "SUBDATASETS");
                ++i;
            }
            return ds;
        }
    }
    const cri::Array *a = index->FindArray(variable);
    if (!a)
    {
        CPLError(CE_Failure, CPLE_AppDefined, "CRI: %s has no variable '%s'",
                 conn.path.c_str(), variable.c_str());
        return nullptr;
    }
    std::vector<std::pair<std::string, uint64_t>> fixed;
    if (!time.empty())
    {
        // The time dimension: the TEMPORAL one, else the outermost of a
        // >= 3-D array that is not the band dimension.
        int td = -1;
        for (size_t d = 0; d < a->dims.size(); ++d)
            if (index->dims.at(a->dims[d]).type == "TEMPORAL")
                td = static_cast<int>(d);
        if (td < 0 && a->dims.size() >= 3 && a->bandDim != 0)
            td = 0;
        if (td < 0)
        {
            CPLError(CE_Failure, CPLE_AppDefined,
                     "CRI: %s: variable %s has no time dimension for TIME=%s",
                     conn.path.c_str(), variable.c_str(), time.c_str());
            return nullptr;
        }
        uint64_t t = 0;
        if (!ResolveTime(*index, index->dims.at(a->dims[td]), time, t))
            return nullptr;
        fixed.emplace_back(a->dims[td], t);
    }
    return cri::OpenClassic(index, table, variable, fixed, nLevel, poOpenInfo->pszFilename);
}

}  // namespace

extern "C" __attribute__((visibility("default"))) void GDALRegister_CRI()
{
    if (!GDAL_CHECK_VERSION("CRI"))
        return;
    if (GDALGetDriverByName("CRI") != nullptr)
        return;
    auto poDriver = new GDALDriver();
    poDriver->SetDescription("CRI");
    poDriver->SetMetadataItem(GDAL_DCAP_RASTER, "YES");
    poDriver->SetMetadataItem(GDAL_DCAP_MULTIDIM_RASTER, "YES");
    poDriver->SetMetadataItem(GDAL_DMD_LONGNAME,
                              "Chunk Reference Index (flat chunk index over "
                              "TIFF/NetCDF/HDF5 archives)");
    poDriver->SetMetadataItem(GDAL_DMD_EXTENSIONS, "cri.parquet cri.gpkg");
    poDriver->SetMetadataItem(GDAL_DMD_CONNECTION_PREFIX, PREFIX);
    poDriver->SetMetadataItem(GDAL_DCAP_VIRTUALIO, "YES");
    poDriver->SetMetadataItem(GDAL_DMD_SUBDATASETS, "YES");
    poDriver->SetMetadataItem("CRI_DRIVER_VERSION", CRI_DRIVER_VERSION);
#ifdef CRI_HAVE_PARQUET
    // Rows of .cri.parquet read by the direct row-group reader (Arrow/Parquet C++).
    poDriver->SetMetadataItem("CRI_PARQUET_READER", "DIRECT");
#else
    poDriver->SetMetadataItem("CRI_PARQUET_READER", "OGR");
#endif
    poDriver->SetMetadataItem("CRI_SPEC_VERSIONS", "0.x");
    poDriver->SetMetadataItem(
        GDAL_DMD_OPENOPTIONLIST,
        "<OpenOptionList>"
        "  <Option name='VARIABLE' type='string' description='Variable to "
        "open as a classic raster'/>"
        "  <Option name='TIME' type='string' description='Time step: an index "
        "or an ISO date'/>"
        "  <Option name='LEVEL' type='int' default='0' description='Level "
        "(0 = full resolution) opened as the main raster'/>"
        "  <Option name='BBOX' type='string' description='minx,miny,maxx,maxy: "
        "read only the chunks whose footprint meets this box (WGS84 lon/lat "
        "unless BBOX_CRS; minx > maxx crosses 180); others read as nodata. "
        "Needs an index with footprints'/>"
        "  <Option name='BBOX_CRS' type='string' description='CRS of BBOX "
        "(e.g. EPSG:32633); default WGS84 lon/lat'/>"
        "</OpenOptionList>");
    poDriver->pfnIdentify = CRIIdentify;
    poDriver->pfnOpen = CRIOpen;
    GetGDALDriverManager()->RegisterDriver(poDriver);
}
