// CRI driver: shared declarations.
//
// The driver reads a flat chunk-reference index (docs/spec/cri-parquet.md):
// rows (variable, level, c0..cK-1, path, offset, length, raw) read through
// OGR (Parquet or GeoPackage), and the `cri` JSON document describing every
// array. Pixels are read by fetching the referenced byte ranges with GDAL's
// VSI layer and undoing the decode chain.
#ifndef CRI_H_INCLUDED
#define CRI_H_INCLUDED

#include "cpl_json.h"
#include "cpl_string.h"
#include "gdal_priv.h"
#include "ogr_geometry.h"
#include "ogrsf_frmts.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#ifndef CRI_DRIVER_VERSION
#define CRI_DRIVER_VERSION "0.1.0"
#endif

namespace cri
{

constexpr int SUPPORTED_MAJOR = 0;

/** One step of a decode chain (spec §3.1). */
struct CodecStep
{
    std::string name{};
    // Parameters, read once from the JSON when the index is opened: decoding
    // runs in several threads, and json-c objects are not safe to read from
    // more than one (their reference counts are not atomic).
    int predictor = 1;
    int samples = 1;
    int elementSize = 0;  // 0: the dtype's item size
    std::string framing{};
    std::string colorspace{};
    std::string tablesB64{};
    int bits = 0;  // unpack_bits: 1, 2 or 4
};

/** One resolution level of an array (spec §2.2). */
struct Level
{
    int level = 0;
    std::vector<uint64_t> shape{};
    std::vector<uint64_t> chunk{};
    std::vector<CodecStep> codec{};
    std::string codecJSON{};  // the chain as written, for GetRawBlockInfo
    bool hasGeoTransform = false;
    double gt[6] = {0, 1, 0, 0, 0, 1};
};

/** One dimension (spec §2.3). */
struct Dimension
{
    std::string name{};
    uint64_t size = 0;
    std::string type{};
    std::vector<double> values{};
    bool fromGeoTransform = false;
    std::string variable{};
    CPLJSONObject json{};  // every key, for CF attributes of the coordinate
};

/** One array (spec §2.1). */
struct Array
{
    std::string name{};
    std::vector<std::string> dims{};
    std::string dtype{};
    GDALDataType eDT = GDT_Unknown;
    int itemSize = 0;
    bool swap = false;  // decoded bytes are not in native order
    bool hasFill = false;
    std::vector<GByte> fill{};  // itemSize bytes, native order
    CPLJSONObject attrs{};
    std::vector<Level> levels{};
    std::vector<int> shortEdgeDims{};  // indices into dims
    int bandDim = -1;
    std::string role = "data";
};

/** The whole `cri` document. */
struct Index
{
    std::string indexPath{};  // as given to Open()
    std::string indexDir{};   // folder holding the index (for relative paths)
    std::string base{};       // `base`, or empty
    std::string version{};
    int K = 0;                // number of cj columns
    std::vector<Array> arrays{};
    std::map<std::string, Dimension> dims{};
    std::string crsWkt{};     // resolved WKT (from wkt, projjson or epsg)
    CPLJSONObject attrs{};
    CPLJSONObject json{};

    const Array *FindArray(const std::string &name) const;
};

/** Held while reading the JSON objects of an Index after parsing (json-c
 * objects are not safe to read from two threads at once, and a parsed Index
 * is shared by every dataset opened on the same file). */
std::recursive_mutex &JSONMutex();

/** Parse and check a `cri` JSON document. Errors are emitted with CPLError. */
bool ParseIndexJSON(const std::string &osJSON, const std::string &osIndexPath,
                    Index &index);

/** The value of `key` in a Parquet file's footer key-value metadata, read
 * with a small Thrift compact-protocol reader (no Arrow). Returns false when
 * the file is not Parquet or has no such key. */
bool ReadParquetKeyValue(const std::string &path, const std::string &key,
                         std::string &value);

/** Map a spec path (§4) to a GDAL VSI path. */
std::string ResolvePath(const Index &index, const std::string &path);

/** A row of the table: where one stored chunk lives. */
struct ChunkRef
{
    int pathIdx = -1;  // index into ChunkTable paths; -1 = inline
    int64_t offset = 0;
    int64_t length = 0;
    uint32_t skip = 0;  // bit k: decode step k not applied (`skip` column)
    std::shared_ptr<std::string> raw{};  // inline bytes
    // The chunk's footprint misses the open's spatial filter (BBOX): it is
    // not read and reads as the fill value; GetRawBlockInfo still gives it.
    bool outside = false;
};

/** The BBOX open option: chunks whose footprint (the index's `geometry`,
 * WGS84 lon/lat, pre-tested on its `bbox` covering column) does not meet
 * the box are not read. The box is a WGS84 (Multi)Polygon built as
 * `chunkindex query --bbox ... --crs ...` builds it, so both select the same
 * chunks. Immutable once built; tested under the ChunkTable lock. */
class SpatialFilter
{
  public:
    ~SpatialFilter();
    /** From "minx,miny,maxx,maxy" in `crs` (empty: WGS84 lon/lat; minx >
     * maxx crosses the antimeridian). nullptr and `error` when invalid. */
    static std::unique_ptr<SpatialFilter> Build(const std::string &bbox,
                                                const std::string &crs,
                                                std::string &error);
    /** Envelopes (xmin, ymin, xmax, ymax) of the box's parts, lon/lat. */
    const std::vector<std::array<double, 4>> &Envelopes() const
    {
        return m_envelopes;
    }
    /** Whether an envelope meets any part's envelope. */
    bool EnvelopeMeets(double xmin, double ymin, double xmax,
                       double ymax) const;
    /** Exact test of a WKB footprint (GEOS; the envelope test alone when
     * GDAL has no GEOS). A footprint that cannot be parsed meets the box
     * (it is read rather than silently dropped). */
    bool Meets(const GByte *wkb, size_t n) const;
    const std::string &Description() const
    {
        return m_description;
    }

  private:
    SpatialFilter() = default;
    std::vector<std::array<double, 4>> m_envelopes{};
    std::unique_ptr<OGRGeometry> m_geom{};
    OGRPreparedGeometry *m_prepared = nullptr;
    std::string m_description{};
};

/** What one opened index has read, for tests and tuning: printed with
 * CPLDebug("CRI", "read summary: ...") when the dataset is closed. */
struct ReadStats
{
    std::atomic<int64_t> queries{0};         // lookups that read the table
    std::atomic<int64_t> rowGroupsRead{0};   // row groups whose rows were read
    std::atomic<int64_t> rowGroupsPrunedBBox{0};  // skipped by bbox statistics
    std::atomic<int64_t> rowsLoaded{0};      // rows decoded from the table
    std::atomic<int64_t> rowsKept{0};        // of those, in the query's box
    std::atomic<int64_t> rowsOutside{0};     // of those, outside BBOX (not read)
    std::atomic<int64_t> chunksFetched{0};   // chunks whose bytes were read
    std::atomic<int64_t> bytesFetched{0};
    std::atomic<int64_t> chunksDecoded{0};   // fetched or inline, decoded
    std::atomic<int64_t> chunksCached{0};    // reads served by the decoded cache
};

/** Chunk coordinates, fixed capacity (spec arrays have few dimensions). */
constexpr int MAX_DIMS = 16;
struct Coords
{
    int n = 0;
    int64_t c[MAX_DIMS] = {};
    bool operator==(const Coords &o) const
    {
        if (n != o.n)
            return false;
        for (int i = 0; i < n; ++i)
            if (c[i] != o.c[i])
                return false;
        return true;
    }
};
/** Step `c` to the next chunk of the box [lo, hi] in C order (last
 * dimension fastest); false once past the end. */
inline bool NextInBox(Coords &c, const Coords &lo, const Coords &hi)
{
    for (int j = c.n - 1; j >= 0; --j)
    {
        if (++c.c[j] <= hi.c[j])
            return true;
        c.c[j] = lo.c[j];
    }
    return false;
}

struct CoordsHash
{
    size_t operator()(const Coords &k) const
    {
        uint64_t h = 1469598103934665603ULL;
        for (int i = 0; i < k.n; ++i)
        {
            h ^= static_cast<uint64_t>(k.c[i]);
            h *= 1099511628211ULL;
        }
        return static_cast<size_t>(h);
    }
};

class ParquetRowGroups;  // cri_parquet.h: built with Arrow/Parquet C++ only

/** Rows of the table, looked up by chunk box and cached. Thread-safe. */
class ChunkTable
{
  public:
    /** Over an opened table. With `filter`, rows carry `outside`. */
    ChunkTable(std::shared_ptr<const Index> index, GDALDataset *poVectorDS,
               OGRLayer *poLayer,
               std::shared_ptr<const SpatialFilter> filter = nullptr);
    /** Over a Parquet file opened on the first lookup. */
    ChunkTable(std::shared_ptr<const Index> index, const std::string &path,
               std::shared_ptr<const SpatialFilter> filter = nullptr);
    ~ChunkTable();

    /** Whether the table has the footprint columns (`geometry`; with
     * Parquet also `bbox`) a spatial filter needs. Opens the table. */
    bool HasFootprints();
    const SpatialFilter *GetSpatialFilter() const
    {
        return m_filter.get();
    }
    ReadStats &Stats()
    {
        return m_stats;
    }

    /** Rows of the chunks of `array` at `level` within the box
     * [cmin, cmax] (inclusive). Missing chunks are simply absent. */
    bool Lookup(const Array &array, int level, const Coords &cmin,
                const Coords &cmax,
                std::vector<std::pair<Coords, ChunkRef>> &out);

    /** Path (as resolved for VSI) of a row's pathIdx. */
    std::string GetPath(int idx) const;
    /** Path as stored in the table. */
    std::string GetStoredPath(int idx) const;

  private:
    struct Box
    {
        Coords lo, hi;
    };
    struct Cache
    {
        std::vector<Box> boxes{};
        std::unordered_map<Coords, ChunkRef, CoordsHash> rows{};
    };

    std::shared_ptr<const Index> m_indexHolder;
    const Index &m_index;
    std::shared_ptr<const SpatialFilter> m_filter;
    ReadStats m_stats{};
    std::unique_ptr<GDALDataset> m_poDS;
    OGRLayer *m_poLayer;
    mutable std::mutex m_mutex{};
    std::map<std::pair<std::string, int>, Cache> m_cache{};
    std::vector<std::string> m_paths{};
    std::vector<std::string> m_resolved{};
    std::unordered_map<std::string, int> m_pathIdx{};
    std::string m_variableField = "variable";
    bool m_variableIsCoded = false;
    std::map<std::string, std::string> m_variableCodes{};

    std::string m_lazyPath{};
    // The direct row-group reader of a .cri.parquet (when built with
    // Arrow/Parquet C++); OGR otherwise, or when it cannot open the file.
    std::shared_ptr<ParquetRowGroups> m_direct{};
    bool m_directTried = false;

    bool EnsureOpen();
    void Setup();
    bool Query(const Array &array, int level, const Coords &lo,
               const Coords &hi, Cache &cache);
    bool QueryDirect(const Array &array, int level, const Coords &lo,
                     const Coords &hi, Cache &cache);
    /** Rows of one Arrow batch into `cache`; with `filter`, only those of
     * `array` at `level` inside [lo, hi] (the direct reader reads whole row
     * groups; OGR has filtered already). */
    bool ConsumeBatch(const Array &array, int level, const Coords &lo,
                      const Coords &hi, const ArrowSchema &schema,
                      const ArrowArray &batch, bool filter, Cache &cache);
    int InternPath(const char *p, size_t n);
};

/** Decode `in` by `level.codec` into `out`, resized to the decoded size
 * (<= full chunk size; a short edge chunk is shorter). `what` names the
 * chunk in error messages. */
bool DecodeChunk(const Array &array, const Level &level, const GByte *in,
                 size_t inSize, std::vector<GByte> &out,
                 const std::string &what, uint32_t skipMask = 0);

/** Name of the first codec step of `level` that this build cannot decode,
 * or empty. */
std::string UnsupportedCodec(const Level &level);

/** A byte range to fetch. */
struct RangeRequest
{
    std::string path{};  // VSI path
    int64_t offset = 0;
    int64_t length = 0;
    std::vector<GByte> *dest = nullptr;
    std::string what{};  // names the chunk in error messages
};

/** Fetch all ranges, grouped by file, adjacent ranges merged, files read
 * concurrently. */
bool FetchRanges(std::vector<RangeRequest> &requests);

/** Open the multidimensional view. */
GDALDataset *OpenMultiDim(std::shared_ptr<Index> index,
                          std::shared_ptr<ChunkTable> table,
                          const std::string &osDescription);

/** Open the classic raster view of one variable at a time step. */
GDALDataset *OpenClassic(std::shared_ptr<Index> index,
                         std::shared_ptr<ChunkTable> table,
                         const std::string &osVariable,
                         const std::vector<std::pair<std::string, uint64_t>>
                             &fixedIndices,
                         int nLevel, const std::string &osDescription);

}  // namespace cri

#endif
