"""Benchmark: footprint rates and query latencies, printed side by side.

- regular footprints/s: an affine WGS84 grid (GHRSST-like, cut fine enough
  for >= 1 M chunks) and a UTM grid (edges sampled and transformed);
- swath hulls/s: a day of MODIS-like granules (288, tie-point geolocation)
  in one stacked call, 256 x 256 chunks (k-DOP over scans) and one-scan
  chunks 10 x 1354 (boundary rings); the enclosure alone and end to end
  (corner interpolation included);
- query latency (`chunkindex.geo.query.query_index`, median of 5 warm runs):
  a GHRSST-scale footprint index (`--days` daily steps x 2,556 chunks of
  analysed_sst, one row per chunk) and `--swath-days` days of swath granules
  (the synthetic day's footprints repeated day after day).

    .venv/bin/python bench/footprints.py [--days 365] [--swath-days 30] [--out DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chunkindex.geo import AffineGrid, TiePointGrid, grid_footprints
from chunkindex.geo import footprints as fp
from chunkindex.geo.footprints import bbox_column
from chunkindex.geo.query import Query, query_index
from chunkindex.indexes.footprints import write_geoparquet
from chunkindex.synthetic import swath

SEED = 20021101


def rate(fn, n_of) -> tuple[float, float, object]:
    """(items/s, seconds, result): median of three runs."""
    times, result = [], None
    for _ in range(3):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return n_of(result) / seconds, seconds, result


def swath_day() -> TiePointGrid:
    parts = [swath.granule_tie_points(SEED, g) for g in range(288)]
    lon = np.stack([p[2] for p in parts])
    lat = np.stack([p[3] for p in parts])
    return TiePointGrid(lon, lat, parts[0][0], parts[0][1], (2030, 1354), scan_lines=10)


def enclosure_only(grid: TiePointGrid, chunks: tuple[int, int]) -> tuple[float, int]:
    """Seconds spent in the enclosure itself (hulls), and the chunk count."""
    spent = []
    original = fp._enclose

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        spent.append(time.perf_counter() - start)
        return out
    fp._enclose = timed
    try:
        result = grid_footprints(grid, chunks)
    finally:
        fp._enclose = original
    return spent[0], len(result)


def ghrsst_index(days: int, path: Path) -> int:
    """A GHRSST-scale footprint index: `days` x 2,556 chunks (36000 x 17999, 512 x 512)."""
    prints = grid_footprints(AffineGrid((-179.995, 0.01, 0.0, 89.995, 0.0, -0.01), 36000, 17999), (512, 512))
    n = len(prints)
    which = np.tile(np.arange(n), days)
    day = np.repeat(np.arange(days), n)
    table = pa.table({
        "variable": pa.array(["analysed_sst"] * which.size),
        "level": pa.array(np.zeros(which.size, np.int16)),
        "c0": pa.array(day.astype(np.int32)), "c1": pa.array(prints.chunk_row[which]),
        "c2": pa.array(prints.chunk_col[which]),
        "path": pa.array([f"{d:05d}.tif" for d in range(days)]).take(pa.array(day)),
        "offset": pa.array(which.astype(np.int64) * 4096), "length": pa.array(np.full(which.size, 4096, np.int64)),
        "time": pa.array(np.datetime64("2002-06-01", "ms") + day.astype("timedelta64[D]"), pa.timestamp("ms")),
        "geometry": prints.wkb.take(pa.array(which)),
        "bbox": bbox_column(prints.bounds[which]),
    })
    write_geoparquet(table, path)
    return table.num_rows


def swath_index(day_prints, days: int, path: Path) -> int:
    """`days` copies of one day's swath footprints (time shifted by a day each)."""
    n = len(day_prints)
    which = np.tile(np.arange(n), days)
    day = np.repeat(np.arange(days), n)
    granule = day * 288 + day_prints.granule[which]
    table = pa.table({
        "variable": pa.array(["cloud_mask"] * which.size), "level": pa.array(np.zeros(which.size, np.int16)),
        "c0": pa.array(granule.astype(np.int32)), "c1": pa.array(day_prints.chunk_row[which]),
        "c2": pa.array(day_prints.chunk_col[which]),
        "path": pa.array(granule.astype(str)), "offset": pa.array(np.zeros(which.size, np.int64)),
        "length": pa.array(np.full(which.size, 100, np.int64)),
        "time": pa.array(np.datetime64("2024-01-01", "ms") + (granule * 300).astype("timedelta64[s]"),
                         pa.timestamp("ms")),
        "geometry": day_prints.wkb.take(pa.array(which)),
        "bbox": bbox_column(day_prints.bounds[which]),
    })
    write_geoparquet(table, path)
    return table.num_rows


def latency(path: Path, query: Query) -> tuple[float, int]:
    query_index(path, query)  # warm: file metadata and page cache
    times, rows = [], 0
    for _ in range(5):
        start = time.perf_counter()
        rows = query_index(path, query).num_rows
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365, help="daily steps of the GHRSST-scale index")
    parser.add_argument("--swath-days", type=int, default=30, help="days of swath granules in the query index")
    parser.add_argument("--out", type=Path, default=None, help="folder for the indexes (default: temporary)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-footprints-"))
    out.mkdir(parents=True, exist_ok=True)
    lines = []

    fine = AffineGrid((-180.0, 0.005, 0.0, 90.0, 0.0, -0.005), 72000, 36000)
    r, _, res = rate(lambda: grid_footprints(fine, (64, 64)), len)
    lines.append(("regular WGS84 footprints (72000 x 36000, 64 x 64 chunks)", f"{len(res):,}", f"{r:,.0f} /s", "1 M /s"))
    utm = AffineGrid((300000.0, 10.0, 0.0, 7000000.0, 0.0, -10.0), 40000, 40000, "EPSG:32755")
    r, _, res = rate(lambda: grid_footprints(utm, (256, 256)), len)
    lines.append(("regular UTM footprints (40000 x 40000, 256 x 256)", f"{len(res):,}", f"{r:,.0f} /s", "-"))

    day = swath_day()
    for chunks, label in (((256, 256), "swath k-DOP hulls, 256 x 256 (288 granules)"),
                          ((10, 1354), "swath boundary rings, 10 x 1354 (288 granules)")):
        hull_s, n = enclosure_only(day, chunks)
        lines.append((label + ": enclosure", f"{n:,}", f"{n / hull_s:,.0f} /s", "100 k /s"))
        r, _, res = rate(lambda c=chunks: grid_footprints(day, c), len)
        lines.append((label + ": end to end", f"{len(res):,}", f"{r:,.0f} /s", "-"))

    ghrsst = out / "ghrsst-scale.footprints.parquet"
    rows = ghrsst_index(args.days, ghrsst)
    for text, q in (("GHRSST-scale, 10x10 deg box, one day", Query((140, -40, 150, -30), start=None, end=None,
                                                                   variable="analysed_sst", level=0)),
                    ("GHRSST-scale, 10x10 deg box, all days", Query((140, -40, 150, -30)))):
        if "one day" in text:
            import datetime as dt
            q = Query(q.bbox, start=dt.datetime(2002, 7, 1), end=dt.datetime(2002, 7, 1, 23), level=0)
        ms, found = latency(ghrsst, q)
        lines.append((f"query {text} ({rows:,} rows)", f"{found:,} chunks", f"{ms:.1f} ms", "50 ms"))

    day_prints = grid_footprints(day, (256, 256))
    swath_path = out / "swath.footprints.parquet"
    rows = swath_index(day_prints, args.swath_days, swath_path)
    import datetime as dt
    for text, q in (("swath, 10x10 deg box, one day", Query((0, -10, 10, 0), start=dt.datetime(2024, 1, 5),
                                                             end=dt.datetime(2024, 1, 5, 23, 59))),
                    ("swath, 10x10 deg box, all days", Query((0, -10, 10, 0)))):
        ms, found = latency(swath_path, q)
        lines.append((f"query {text} ({rows:,} rows)", f"{found:,} chunks", f"{ms:.1f} ms", "50 ms"))

    width = max(len(line[0]) for line in lines)
    print(f"{'measure':<{width}}  {'count':>16}  {'result':>14}  {'target':>9}")
    for label, count, result, target in lines:
        print(f"{label:<{width}}  {count:>16}  {result:>14}  {target:>9}")


if __name__ == "__main__":
    main()
