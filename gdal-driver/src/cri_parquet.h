// Direct row-group reader of a *.cri.parquet table (see cri_parquet.cpp).
// Declared whatever the build; defined only with CRI_HAVE_PARQUET.
#ifndef CRI_PARQUET_H_INCLUDED
#define CRI_PARQUET_H_INCLUDED

#include "cri.h"
#include "ogr_recordbatch.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace cri
{

#ifdef CRI_HAVE_PARQUET
class ParquetRowGroups
{
  public:
    ~ParquetRowGroups();
    /** Open `path` (a VSI path) and read the row-group statistics of
     * variable, level, c0..cK-1 (and bbox.* when present). With
     * `footprints`, reads also return the `bbox` and `geometry` columns.
     * nullptr (and `error`) when it cannot. */
    static std::unique_ptr<ParquetRowGroups> Open(const std::string &path,
                                                  int K, bool footprints,
                                                  std::string &error);
    /** Row groups whose statistics meet (variable, level, box [lo, hi]);
     * with `filter`, also its envelopes (bbox statistics of groups whose
     * every row has a footprint). `prunedByBBox` counts the groups only
     * the bbox statistics ruled out. */
    std::vector<int> Select(const std::string &variable, int level,
                            const Coords &lo, const Coords &hi,
                            const SpatialFilter *filter,
                            int &prunedByBBox) const;
    /** Whether the file has `geometry` and `bbox` columns. */
    bool HasFootprints() const;
    /** Read the used columns of `groups`, batch by batch, into `consume`
     * (rows are not filtered here). */
    bool Read(const std::vector<int> &groups,
              const std::function<bool(const ArrowSchema &, const ArrowArray &)>
                  &consume,
              std::string &error);
    int GroupCount() const;

  private:
    ParquetRowGroups();
    struct Impl;
    std::unique_ptr<Impl> m;
};
#endif

}  // namespace cri

#endif
