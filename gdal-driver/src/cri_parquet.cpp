// Direct row-group reader of a *.cri.parquet table (built when Arrow/Parquet
// C++ is found: pyarrow's bundled libraries, or conda-forge's libparquet).
//
// Why: through OGR, every query walks the statistics of every row group and
// post-filters rows one by one (~10 us a row). Here the row-group min/max
// statistics of variable/level/c0..cK-1 are read once when the table is
// opened, each query picks the groups whose ranges meet its box with a scan
// of plain vectors, and reads only the columns the driver uses of only those
// groups (parquet::arrow::FileReader::ReadRowGroups). The rows are handed to
// the driver as Arrow C arrays, filtered to the box there.
#include "cri_parquet.h"

#ifdef CRI_HAVE_PARQUET

#include "cpl_vsi.h"

#include <arrow/api.h>
#include <arrow/c/bridge.h>
#include <arrow/io/interfaces.h>
#include <parquet/arrow/reader.h>
#include <parquet/file_reader.h>
#include <parquet/metadata.h>
#include <parquet/statistics.h>

#include <limits>

namespace cri
{

namespace
{

/** An Arrow random-access file over GDAL's VSI layer (local, /vsicurl/,
 * /vsis3/ ...). Reads are serialised: the ChunkTable lock is held anyway. */
class VSIArrowFile final : public arrow::io::RandomAccessFile
{
  public:
    VSIArrowFile(VSILFILE *fp, int64_t size) : m_fp(fp), m_size(size)
    {
    }
    ~VSIArrowFile() override
    {
        if (m_fp)
            VSIFCloseL(m_fp);
    }
    arrow::Status Close() override
    {
        if (m_fp)
            VSIFCloseL(m_fp);
        m_fp = nullptr;
        return arrow::Status::OK();
    }
    bool closed() const override
    {
        return m_fp == nullptr;
    }
    arrow::Result<int64_t> Tell() const override
    {
        return m_pos;
    }
    arrow::Status Seek(int64_t position) override
    {
        m_pos = position;
        return arrow::Status::OK();
    }
    arrow::Result<int64_t> GetSize() override
    {
        return m_size;
    }
    arrow::Result<int64_t> Read(int64_t nbytes, void *out) override
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        if (!m_fp)
            return arrow::Status::IOError("file closed");
        if (VSIFSeekL(m_fp, static_cast<vsi_l_offset>(m_pos), SEEK_SET) != 0)
            return arrow::Status::IOError("seek failed");
        const size_t n = VSIFReadL(out, 1, static_cast<size_t>(nbytes), m_fp);
        m_pos += static_cast<int64_t>(n);
        return static_cast<int64_t>(n);
    }
    arrow::Result<std::shared_ptr<arrow::Buffer>> Read(int64_t nbytes) override
    {
        ARROW_ASSIGN_OR_RAISE(auto buffer, arrow::AllocateResizableBuffer(nbytes));
        ARROW_ASSIGN_OR_RAISE(int64_t n, Read(nbytes, buffer->mutable_data()));
        ARROW_RETURN_NOT_OK(buffer->Resize(n, false));
        return std::shared_ptr<arrow::Buffer>(std::move(buffer));
    }
    arrow::Result<int64_t> ReadAt(int64_t position, int64_t nbytes,
                                  void *out) override
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        if (!m_fp)
            return arrow::Status::IOError("file closed");
        if (VSIFSeekL(m_fp, static_cast<vsi_l_offset>(position), SEEK_SET) != 0)
            return arrow::Status::IOError("seek failed");
        return static_cast<int64_t>(
            VSIFReadL(out, 1, static_cast<size_t>(nbytes), m_fp));
    }
    arrow::Result<std::shared_ptr<arrow::Buffer>> ReadAt(int64_t position,
                                                         int64_t nbytes) override
    {
        ARROW_ASSIGN_OR_RAISE(auto buffer, arrow::AllocateResizableBuffer(nbytes));
        ARROW_ASSIGN_OR_RAISE(int64_t n, ReadAt(position, nbytes, buffer->mutable_data()));
        ARROW_RETURN_NOT_OK(buffer->Resize(n, false));
        return std::shared_ptr<arrow::Buffer>(std::move(buffer));
    }

  private:
    VSILFILE *m_fp;
    int64_t m_size;
    int64_t m_pos = 0;
    std::mutex m_mutex{};
};

/** min/max of an integer column chunk's statistics; false when absent. */
bool IntRange(const std::shared_ptr<parquet::Statistics> &st, int64_t &lo,
              int64_t &hi)
{
    if (!st || !st->HasMinMax())
        return false;
    if (st->physical_type() == parquet::Type::INT32)
    {
        auto s = std::static_pointer_cast<parquet::Int32Statistics>(st);
        lo = s->min();
        hi = s->max();
        return true;
    }
    if (st->physical_type() == parquet::Type::INT64)
    {
        auto s = std::static_pointer_cast<parquet::Int64Statistics>(st);
        lo = s->min();
        hi = s->max();
        return true;
    }
    return false;
}

}  // namespace

struct ParquetRowGroups::Impl
{
    std::unique_ptr<parquet::arrow::FileReader> reader{};
    int nGroups = 0;
    int K = 0;
    // Per row group: [lo, hi] of variable (strings), level, c0..cK-1; a
    // group without statistics for a column has the widest range.
    std::vector<std::string> varLo{}, varHi{};
    std::vector<bool> varKnown{};
    std::vector<int64_t> ranges{};  // nGroups x (1 + K) x 2
    std::vector<int> columns{};     // leaf columns read
    bool hasFootprints = false;
    // Per row group: xmin, ymin, xmax, ymax statistics of bbox.* (the least
    // xmin, ymin and greatest xmax, ymax are what prune), and whether every
    // row has a footprint (no nulls): only then may a group be skipped.
    std::vector<std::array<double, 4>> bbox{};
    std::vector<bool> bboxKnown{};
};

ParquetRowGroups::ParquetRowGroups() : m(new Impl())
{
}

ParquetRowGroups::~ParquetRowGroups() = default;

std::unique_ptr<ParquetRowGroups> ParquetRowGroups::Open(const std::string &path,
                                                         int K, bool footprints,
                                                         std::string &error)
{
    if (CPLTestBool(CPLGetConfigOption("CRI_USE_OGR", "NO")))
    {
        error = "CRI_USE_OGR=YES";
        return nullptr;
    }
    VSILFILE *fp = VSIFOpenL(path.c_str(), "rb");
    if (!fp)
    {
        error = "cannot open " + path;
        return nullptr;
    }
    VSIFSeekL(fp, 0, SEEK_END);
    const auto size = static_cast<int64_t>(VSIFTellL(fp));
    auto file = std::make_shared<VSIArrowFile>(fp, size);
    std::unique_ptr<ParquetRowGroups> out(new ParquetRowGroups());
    Impl &d = *out->m;
    try
    {
        auto pq = parquet::ParquetFileReader::Open(file);
        const std::shared_ptr<parquet::FileMetaData> md = pq->metadata();
        const parquet::SchemaDescriptor *schema = md->schema();
        const int iVar = schema->ColumnIndex("variable");
        const int iLevel = schema->ColumnIndex("level");
        if (iVar < 0 || iLevel < 0)
        {
            error = "no variable/level columns";
            return nullptr;
        }
        std::vector<int> iC(K);
        for (int j = 0; j < K; ++j)
        {
            iC[j] = schema->ColumnIndex(CPLSPrintf("c%d", j));
            if (iC[j] < 0)
            {
                error = CPLSPrintf("no column c%d", j);
                return nullptr;
            }
        }
        d.K = K;
        d.nGroups = md->num_row_groups();
        d.varLo.resize(d.nGroups);
        d.varHi.resize(d.nGroups);
        d.varKnown.assign(d.nGroups, false);
        d.ranges.resize(static_cast<size_t>(d.nGroups) * (1 + K) * 2);
        for (int g = 0; g < d.nGroups; ++g)
        {
            auto rg = md->RowGroup(g);
            auto vs = rg->ColumnChunk(iVar)->statistics();
            if (vs && vs->HasMinMax() &&
                vs->physical_type() == parquet::Type::BYTE_ARRAY)
            {
                auto s = std::static_pointer_cast<parquet::ByteArrayStatistics>(vs);
                d.varLo[g].assign(reinterpret_cast<const char *>(s->min().ptr),
                                  s->min().len);
                d.varHi[g].assign(reinterpret_cast<const char *>(s->max().ptr),
                                  s->max().len);
                d.varKnown[g] = true;
            }
            int64_t *r = &d.ranges[static_cast<size_t>(g) * (1 + K) * 2];
            for (int j = 0; j <= K; ++j)
            {
                const int col = j == 0 ? iLevel : iC[j - 1];
                if (!IntRange(rg->ColumnChunk(col)->statistics(), r[2 * j],
                              r[2 * j + 1]))
                {
                    r[2 * j] = std::numeric_limits<int64_t>::min();
                    r[2 * j + 1] = std::numeric_limits<int64_t>::max();
                }
            }
        }
        const int iGeom = schema->ColumnIndex("geometry");
        int iBBox[4];
        const char *const bboxNames[4] = {"bbox.xmin", "bbox.ymin",
                                          "bbox.xmax", "bbox.ymax"};
        d.hasFootprints = iGeom >= 0;
        for (int k = 0; k < 4; ++k)
        {
            iBBox[k] = schema->ColumnIndex(bboxNames[k]);
            d.hasFootprints = d.hasFootprints && iBBox[k] >= 0;
        }
        if (d.hasFootprints)
        {
            d.bbox.resize(d.nGroups);
            d.bboxKnown.assign(d.nGroups, false);
            for (int g = 0; g < d.nGroups; ++g)
            {
                auto rg = md->RowGroup(g);
                bool known = true;
                for (int k = 0; k < 4 && known; ++k)
                {
                    auto st = rg->ColumnChunk(iBBox[k])->statistics();
                    known = st && st->HasMinMax() && st->HasNullCount() &&
                            st->null_count() == 0 &&
                            st->physical_type() == parquet::Type::DOUBLE;
                    if (known)
                    {
                        auto ds = std::static_pointer_cast<parquet::DoubleStatistics>(st);
                        d.bbox[g][k] = k < 2 ? ds->min() : ds->max();
                    }
                }
                d.bboxKnown[g] = known;
            }
        }
        for (const char *name : {"variable", "level", "path", "offset",
                                 "length", "raw", "skip"})
        {
            const int i = schema->ColumnIndex(name);
            if (i >= 0)
                d.columns.push_back(i);
        }
        for (int j = 0; j < K; ++j)
            d.columns.push_back(iC[j]);
        if (footprints && d.hasFootprints)
        {
            d.columns.push_back(iGeom);
            for (int k = 0; k < 4; ++k)
                d.columns.push_back(iBBox[k]);
        }
        parquet::ArrowReaderProperties props;
        props.set_read_dictionary(iVar, true);  // one string per group, not per row
        const int iPath = schema->ColumnIndex("path");
        if (iPath >= 0)
            props.set_read_dictionary(iPath, true);
        // Footprints repeat along time/depth/band: each is parsed once a group.
        if (footprints && iGeom >= 0)
            props.set_read_dictionary(iGeom, true);
        auto made = parquet::arrow::FileReader::Make(arrow::default_memory_pool(),
                                                     std::move(pq), props);
        if (!made.ok())
        {
            error = made.status().ToString();
            return nullptr;
        }
        d.reader = std::move(made).ValueUnsafe();
    }
    catch (const std::exception &e)
    {
        error = e.what();
        return nullptr;
    }
    return out;
}

std::vector<int> ParquetRowGroups::Select(const std::string &variable,
                                          int level, const Coords &lo,
                                          const Coords &hi,
                                          const SpatialFilter *filter,
                                          int &prunedByBBox) const
{
    const Impl &d = *m;
    std::vector<int> groups;
    prunedByBBox = 0;
    const int K = d.K;
    for (int g = 0; g < d.nGroups; ++g)
    {
        if (d.varKnown[g] && (variable < d.varLo[g] || variable > d.varHi[g]))
            continue;
        const int64_t *r = &d.ranges[static_cast<size_t>(g) * (1 + K) * 2];
        if (level < r[0] || level > r[1])
            continue;
        bool meets = true;
        for (int j = 0; j < K && j < lo.n && meets; ++j)
            meets = hi.c[j] >= r[2 * (j + 1)] && lo.c[j] <= r[2 * (j + 1) + 1];
        if (!meets)
            continue;
        if (filter && d.hasFootprints && d.bboxKnown[g])
        {
            const auto &b = d.bbox[g];
            if (!filter->EnvelopeMeets(b[0], b[1], b[2], b[3]))
            {
                ++prunedByBBox;
                continue;
            }
        }
        groups.push_back(g);
    }
    return groups;
}

bool ParquetRowGroups::HasFootprints() const
{
    return m->hasFootprints;
}

bool ParquetRowGroups::Read(const std::vector<int> &groups,
                            const std::function<bool(const ArrowSchema &,
                                                     const ArrowArray &)> &consume,
                            std::string &error)
{
    if (groups.empty())
        return true;
    try
    {
        auto table = m->reader->ReadRowGroups(groups, m->columns);
        if (!table.ok())
        {
            error = table.status().ToString();
            return false;
        }
        arrow::TableBatchReader batches(**table);
        batches.set_chunksize(1 << 20);
        while (true)
        {
            std::shared_ptr<arrow::RecordBatch> batch;
            auto st = batches.ReadNext(&batch);
            if (!st.ok())
            {
                error = st.ToString();
                return false;
            }
            if (!batch)
                break;
            ArrowArray carray;
            ArrowSchema cschema;
            st = arrow::ExportRecordBatch(*batch, &carray, &cschema);
            if (!st.ok())
            {
                error = st.ToString();
                return false;
            }
            const bool ok = consume(cschema, carray);
            carray.release(&carray);
            cschema.release(&cschema);
            if (!ok)
                return false;
        }
    }
    catch (const std::exception &e)
    {
        error = e.what();
        return false;
    }
    return true;
}

int ParquetRowGroups::GroupCount() const
{
    return m->nGroups;
}

}  // namespace cri

#endif  // CRI_HAVE_PARQUET
