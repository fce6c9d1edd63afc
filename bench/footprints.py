"""Benchmark: footprint rates and query latencies, printed side by side.

Rates are in CPU time of the process (best of three); latencies in wall
time, with the CPU time of the process beside them.

- regular footprints/s: an affine WGS84 grid (GHRSST-like, cut fine enough
  for >= 1 M chunks) and a UTM grid (edges sampled and transformed);
- swath hulls/s: a day of MODIS-like granules (288, tie-point geolocation)
  in one stacked call, 256 x 256 chunks (k-DOP over scans) and one-scan
  chunks 10 x 1354 (boundary rings); the enclosure alone and end to end
  (corner interpolation included);
- query latency (median of 5 warm runs, and the first query of a fresh
  process, the imports of `chunkindex query` done) of `query_index` (what
  `chunkindex query` runs), DuckDB on the bbox columns and `ogrinfo -spat`:
  on the GHRSST-scale footprint index (`--days` 8,660 daily files x (analysed_sst,
  mask) x 3,432 chunks of six levels = 59 M rows) and on `--swath-days` 365
  days of swath granules (the synthetic day's 288 granules each day, as its
  files hard-linked under other dates would index: 5 M rows), written in
  the layout of `write_geoparquet`, streamed (generated once into `--out`).

    .venv/bin/python bench/footprints.py [--days 8660] [--swath-days 365] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chunkindex.geo import AffineGrid, TiePointGrid, grid_footprints
from chunkindex.geo import footprints as fp
from chunkindex.geo.footprints import bbox_column
from chunkindex.geo.query import RANGES_KEY, Query, merge_ranges, query_index, row_group_ranges
from chunkindex.indexes.footprints import ROW_GROUP_ROWS, geoparquet_metadata, parquet_options, spatial_order
from chunkindex.synthetic import swath

SEED = 20021101


def rate(fn, n_of) -> tuple[float, float, object]:
    """(items/s, seconds, result): the best of three runs, in CPU time of this
    process (single-threaded numpy: on a shared machine wall time measures
    the neighbours)."""
    times, result = [], None
    for _ in range(3):
        start = time.process_time()
        result = fn()
        times.append(time.process_time() - start)
    seconds = min(times)
    return n_of(result) / seconds, seconds, result


def swath_day() -> TiePointGrid:
    parts = [swath.granule_tie_points(SEED, g) for g in range(288)]
    lon = np.stack([p[2] for p in parts])
    lat = np.stack([p[3] for p in parts])
    return TiePointGrid(lon, lat, parts[0][0], parts[0][1], (2030, 1354), scan_lines=10)


def enclosure_only(grid: TiePointGrid, chunks: tuple[int, int]) -> tuple[float, int]:
    """CPU seconds spent in the enclosure itself (hulls; best of three), and the chunk count."""
    spent = []
    original = fp._enclose

    def timed(*args, **kwargs):
        start = time.process_time()
        out = original(*args, **kwargs)
        spent.append(time.process_time() - start)
        return out
    fp._enclose = timed
    try:
        for _ in range(3):
            result = grid_footprints(grid, chunks)
    finally:
        fp._enclose = original
    return min(spent), len(result)


def stream_index(path: Path, prints: list[tuple[str, int, object]], days: int, rows_of_day, times,
                 row_group_rows: int = ROW_GROUP_ROWS) -> int:
    """Write a footprint index of `days` x the footprints of `prints`
    ((variable, level, Footprints) per array) in the layout
    `write_geoparquet` gives, streamed: rows in `spatial_order` of their
    footprint (each footprint's days side by side), `row_group_rows` per row
    group, `parquet_options`, the `geo` metadata and row-group ranges. Writing the 59 M rows in
    one table would need ~10 GB; streamed, one batch at a time.

    `rows_of_day(which, day)` gives (path, offset) of chunk rows; `times(day,
    which)` their timestamps (ms)."""
    variable = np.concatenate([np.full(len(f), v, object) for v, _, f in prints])
    level = np.concatenate([np.full(len(f), lv, np.int16) for _, lv, f in prints])
    crow = np.concatenate([f.chunk_row for _, _, f in prints])
    ccol = np.concatenate([f.chunk_col for _, _, f in prints])
    granule = np.concatenate([f.granule if f.granule is not None else np.zeros(len(f), np.int32)
                              for _, _, f in prints])
    wkb = pa.concat_arrays([f.wkb for _, _, f in prints])
    bounds = np.concatenate([f.bounds for _, _, f in prints])
    native = np.concatenate([f.native_bounds for _, _, f in prints])
    crs = np.concatenate([np.full(len(f), f.native_crs, object) for _, _, f in prints])
    # `spatial_order(bounds)` row by row: footprints by Morton code, each
    # footprint's rows (days) side by side, as a stable sort of the table gives.
    order = spatial_order(bounds)
    schema = None
    writer = None
    ranges = []
    pending = None
    total = 0
    per_batch = max(1, 2_000_000 // days)
    try:
        for start in range(0, order.size, per_batch):
            fps = order[start:start + per_batch]
            which = np.repeat(fps, days)
            day = np.tile(np.arange(days), fps.size)
            stamp = times(day, granule[which])
            path_col, offset = rows_of_day(which, day, granule[which])
            batch = pa.table({
                "variable": pa.array(variable[which], pa.string()), "level": pa.array(level[which]),
                "c0": pa.array((day * (granule.max() + 1) + granule[which]).astype(np.int32)),
                "c1": pa.array(crow[which]), "c2": pa.array(ccol[which]),
                "path": path_col, "offset": pa.array(offset),
                "length": pa.array(np.full(which.size, 4096, np.int64)),
                "time": pa.array(stamp, pa.timestamp("ms")),
                "geometry": wkb.take(pa.array(which)), "bbox": bbox_column(bounds[which]),
                **{f"native_{k}": pa.array(native[which, i])
                   for i, k in enumerate(("xmin", "ymin", "xmax", "ymax"))},
                "native_crs": pa.array(crs[which], pa.string()),
            })
            if writer is None:
                extent = [float(bounds[:, 0].min()), float(bounds[:, 1].min()), float(bounds[:, 2].max()),
                          float(bounds[:, 3].max())]
                schema = batch.schema.with_metadata({b"geo": json.dumps(geoparquet_metadata(extent)).encode()})
                writer = pq.ParquetWriter(str(path), schema, **parquet_options(schema))
            # Whole row groups only, as one write of the table would cut them.
            pending = pa.concat_tables([pending, batch.cast(schema)]) if pending is not None else batch.cast(schema)
            full = pending.num_rows // row_group_rows * row_group_rows
            if full:
                writer.write_table(pending.slice(0, full), row_group_size=row_group_rows)
                ranges.append(row_group_ranges(pending.slice(0, full), row_group_rows))
                pending = pending.slice(full)
            total += batch.num_rows
        if pending is not None and pending.num_rows:
            writer.write_table(pending, row_group_size=row_group_rows)
            ranges.append(row_group_ranges(pending, row_group_rows))
        writer.add_key_value_metadata(merge_ranges(ranges))
    finally:
        if writer is not None:
            writer.close()
    return total


def ghrsst_prints() -> list[tuple[str, int, object]]:
    """GHRSST MUR's grids: 36000 x 17999 at 0.01 degree in 512 x 512 tiles and
    its five overviews, for analysed_sst and mask (3,432 footprints each)."""
    out = []
    for lv, f in enumerate((1, 2, 4, 8, 16, 32)):
        w, h = -(-36000 // f), -(-17999 // f)
        prints = grid_footprints(AffineGrid((-179.995, 0.01 * f, 0.0, 89.995, 0.0, -0.01 * f), w, h), (512, 512))
        out += [("analysed_sst", lv, prints), ("mask", lv, prints)]
    return out


def ghrsst_scale_index(days: int, path: Path) -> int:
    """The GHRSST-scale footprint index: `days` daily files (8,660: 59 M rows)."""
    names = pa.array([f"{d:05d}/JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1.tif" for d in range(days)])
    start = np.datetime64("2002-06-01T09:00", "ms")
    return stream_index(path, ghrsst_prints(), days,
                        lambda which, day, _: (names.take(pa.array(day)), which.astype(np.int64) * 4096),
                        lambda day, _: start + day.astype("timedelta64[D]"))


def swath_year_index(day_prints, days: int, path: Path) -> int:
    """`days` days of swath granules: the synthetic day's 288 granules each
    day (as the fixture's granule files hard-linked under other dates)."""
    start = np.datetime64("2024-01-01", "ms")
    return stream_index(
        path, [("cloud_mask", 0, day_prints)], days,
        lambda which, day, granule: (pa.array(np.char.add(np.char.add("MOD021KM.", (day * 1000 + granule).astype(str)),
                                                          ".nc")), np.zeros(which.size, np.int64)),
        lambda day, granule: start + day.astype("timedelta64[D]") + (granule * 300).astype("timedelta64[s]"))


def _median_ms(fn, runs: int = 5) -> tuple[float, float, object]:
    """(median wall ms, median CPU ms of this process, result) of warm runs."""
    result = fn()  # warm: file metadata and page cache
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls) * 1000, statistics.median(cpus) * 1000, result


COLD = """
import sys, time, datetime
import chunkindex.cli
from chunkindex.geo.query import Query, query_index
query = Query({bbox!r}, start={start!r}, end={end!r}, level={level!r})
wall, cpu = time.perf_counter(), time.process_time()
query_index({path!r}, query)
print((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000)
"""


def cold_ms(path: Path, query: Query, runs: int = 3) -> tuple[float, float]:
    """Median (wall, CPU) ms of the first query of a process, as `chunkindex
    query` runs it (its imports done; the file in the page cache)."""
    got = []
    for _ in range(runs):
        code = COLD.format(bbox=query.bbox, start=query.start, end=query.end, level=query.level, path=str(path))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        got.append([float(v) for v in out.stdout.split()])
    return statistics.median(g[0] for g in got), statistics.median(g[1] for g in got)


def latencies(path: Path, query: Query, text: str, rows: int) -> list[tuple[str, str, str, str]]:
    """Median warm latency of the query three ways: `query_index` (what
    `chunkindex query` runs; the CLI adds Python start-up), DuckDB on the bbox
    covering columns (a superset: no exact footprint test), and `ogrinfo
    -spat` (a process each time, GDAL start-up included)."""
    ms, cpu, table = _median_ms(lambda: query_index(path, query))
    out = [(f"query {text} ({rows:,} rows): warm, wall (CPU)", f"{table.num_rows:,} chunks",
            f"{ms:.1f} ({cpu:.1f}) ms", "50 ms")]
    ms, cpu = cold_ms(path, query)
    out.append(("  the first query of a process, wall (CPU)", "", f"{ms:.1f} ({cpu:.1f}) ms", "-"))
    minx, miny, maxx, maxy = query.bbox
    where = [f"bbox.xmin <= {maxx}", f"bbox.xmax >= {minx}", f"bbox.ymin <= {maxy}", f"bbox.ymax >= {miny}"]
    if query.level is not None:
        where.append(f"level = {query.level}")
    if query.start:
        where += [f"time >= TIMESTAMP '{query.start}'", f"time <= TIMESTAMP '{query.end}'"]
    try:
        import duckdb

        con = duckdb.connect()
        sql = (f"SELECT variable, level, c0, c1, c2, path, \"offset\", length FROM read_parquet('{path}') "
               f"WHERE {' AND '.join(where)}")
        ms, _, found = _median_ms(lambda: con.execute(sql).fetchall())
        out.append(("  DuckDB, bbox columns (superset)", f"{len(found):,} chunks", f"{ms:.1f} ms", "-"))
    except ImportError:
        pass
    ogr_where = " AND ".join(w for w in where if not w.startswith(("bbox", "time")))
    cmd = [str(Path(sys.executable).parent / "ogrinfo"), "-ro", "-al", "-so", str(path), "-spat", *map(str, query.bbox)]
    if ogr_where:
        cmd += ["-where", ogr_where]
    if query.start is None:  # ogrinfo -so reports the feature count the filters give
        ms, _, run = _median_ms(lambda: subprocess.run(cmd, capture_output=True, text=True, check=True), runs=3)
        count = next((line.split(":")[1].strip() for line in run.stdout.splitlines() if "Feature Count" in line), "?")
        out.append(("  ogrinfo -al -so -spat (a process, start-up included)", f"{count} features", f"{ms:.0f} ms", "-"))
    return out


def _current(path: Path) -> bool:
    """Whether `path` exists in the current layout (with the row-group
    ranges, in `spatial_order` by size class); else it is written again."""
    return path.exists() and RANGES_KEY in (pq.ParquetFile(path).metadata.metadata or {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=8660,
                        help="daily files of the GHRSST-scale index (8,660: 59 M rows, as the real archive)")
    parser.add_argument("--swath-days", type=int, default=365, help="days of swath granules in the query index")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the indexes, kept and reused (default: a temporary one)")
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

    import datetime as dt

    ghrsst = out / f"ghrsst-scale-{args.days}.footprints.parquet"
    if not _current(ghrsst):
        ghrsst_scale_index(args.days, ghrsst)
    rows = pq.ParquetFile(ghrsst).metadata.num_rows
    one_day = (dt.datetime(2010, 7, 1), dt.datetime(2010, 7, 1, 23))
    for text, q in (("GHRSST-scale, 10x10 deg, one day, level 0", Query((140, -40, 150, -30), start=one_day[0],
                                                                        end=one_day[1], level=0)),
                    ("GHRSST-scale, 10x10 deg, every day, level 0", Query((140, -40, 150, -30), level=0)),
                    ("GHRSST-scale, 1x1 deg, every day and level", Query((145, -35, 146, -34)))):
        lines += latencies(ghrsst, q, text, rows)

    day_prints = grid_footprints(day, (256, 256))
    swath_path = out / f"swath-{args.swath_days}-days.footprints.parquet"
    if not _current(swath_path):
        swath_year_index(day_prints, args.swath_days, swath_path)
    rows = pq.ParquetFile(swath_path).metadata.num_rows
    for text, q in (("swath year, 10x10 deg, one day", Query((0, -10, 10, 0), start=dt.datetime(2024, 3, 5),
                                                             end=dt.datetime(2024, 3, 5, 23, 59))),
                    ("swath year, 10x10 deg, every day", Query((0, -10, 10, 0)))):
        lines += latencies(swath_path, q, text, rows)

    width = max(len(line[0]) for line in lines)
    print(f"{'measure':<{width}}  {'count':>16}  {'result':>14}  {'target':>9}")
    for label, count, result, target in lines:
        print(f"{label:<{width}}  {count:>16}  {result:>14}  {target:>9}")


if __name__ == "__main__":
    main()
