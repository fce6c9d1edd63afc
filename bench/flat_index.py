"""Benchmark: the CRI flat index against Kerchunk Parquet on the 8,660-file
GHRSST-scale archive (dataset `ghrsst-scale`: full-size COG headers as hard
links of one COG, made once and cached by bench/ghrsst_scale.py).

Side by side, from the same assembled arrays in one run:
- write time and rate (references encoded per second), file size;
- one chunk's reference, cold open included, median of 20 random chunks:
  CRI with pyarrow (`open_index(...).refs`) and DuckDB, Kerchunk through our
  reader and through GDAL's `ZARR:` driver (`GetRawBlockInfo`);
- one time step's references (2,556 rows at full resolution);
- the `path` dictionary vs `file_id` + files table layouts (spec §1.4, A.3).

    .venv/bin/python bench/flat_index.py [--files 8660] [--workdir DIR] [--repeat 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def drop_page_cache_hint(path: Path) -> None:
    """Ask the kernel to forget a file's pages (cold open without root: best effort)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for item in files:
        fd = os.open(item, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def write_file_id_variant(arrays, target: Path) -> Path:
    """The same rows with `file_id` (int32) in place of `path`, the paths in
    the metadata's files table: the alternative spec §1.4 weighs."""
    import pyarrow as pa
    import pyarrow.compute
    import pyarrow.parquet as pq

    from chunkindex.indexes import flat

    doc, rows = flat._document_and_rows(arrays, None, None, None)
    doc["files"] = {"columns": ["file_id", "path"], "rows": [[i, p] for i, p in enumerate(rows.paths)]}
    names = rows.schema.names
    position = names.index("path")
    schema = rows.schema.set(position, pa.field("file_id", pa.int32()))
    coordinate_columns = [n for n in names if n.startswith("c") and n[1:].isdigit()]
    with pq.ParquetWriter(target, schema, compression="zstd", store_schema=False,
                          use_dictionary=["variable", "level", *coordinate_columns],
                          column_encoding={"offset": "DELTA_BINARY_PACKED", "length": "DELTA_BINARY_PACKED",
                                           "file_id": "DELTA_BINARY_PACKED"},
                          write_statistics=["variable", "level", *coordinate_columns, "file_id"]) as writer:
        for part in rows.parts:
            # Global file ids: the rows' path ids without the per-group cut.
            for start, stop in zip(part.cuts(flat.ROW_GROUP_ROWS)[:-1], part.cuts(flat.ROW_GROUP_ROWS)[1:],
                                   strict=True):
                batch = rows.batch(part, start, stop)
                columns = list(batch.columns)
                low = rows.paths.index(columns[position].dictionary[0].as_py()) if len(batch) else 0
                columns[position] = pa.compute.add(columns[position].indices, low)
                writer.write_batch(pa.record_batch(columns, schema=schema), row_group_size=stop - start)
        writer.add_key_value_metadata({"cri": json.dumps(doc, separators=(",", ":"))})
    return target


def run_queries(out: Path) -> dict[str, float]:
    """Lookups and time-step queries on the indexes in `out` (fresh process)."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from chunkindex.indexes.flat import open_index
    from chunkindex.indexes.kerchunk import lookup_reference
    from chunkindex.tables import read_parquet

    plan = json.loads((out / "plan.json").read_text())
    kerchunk_path, cri_path, fid_path = out / "index.parq", out / "index.cri.parquet", out / "index-fileid.parquet"
    picks = [tuple(c) for c in plan["picks"]]
    truth = {c: tuple(t) for c, t in zip(picks, plan["truth"])}
    grid = plan["grid"]
    figures: dict[str, float] = {}

    def lookups(fn, drop: Path | None = None) -> float:
        """Median of one lookup per picked chunk; every lookup opens the
        index anew; `drop`: evict that index from the page cache first."""
        samples = []
        for chunk in picks:
            if drop is not None:
                drop_page_cache_hint(drop)
            start = time.perf_counter()
            fn(chunk)
            samples.append(time.perf_counter() - start)
        return median_ms(samples)

    def cri_pyarrow(chunk):
        ref = open_index(cri_path).refs("analysed_sst", chunk)
        assert (ref["url"], ref["offset"]) == truth[chunk], (ref, truth[chunk])

    shared = duckdb.connect()

    def cri_duckdb(chunk, con=None):
        fresh = con is None
        con = duckdb.connect() if fresh else con
        row = con.execute(f"SELECT path, \"offset\", length FROM read_parquet('{cri_path}') WHERE variable = "
                          "'analysed_sst' AND level = 0 AND c0 = ? AND c1 = ? AND c2 = ?", list(chunk)).fetchone()
        if fresh:
            con.close()
        assert row[1] == truth[chunk][1]

    def fileid_pyarrow(chunk):
        table = pq.read_table(fid_path, columns=["file_id", "offset", "length"], filters=[
            ("variable", "=", "analysed_sst"), ("level", "=", 0), ("c0", "=", chunk[0]), ("c1", "=", chunk[1]),
            ("c2", "=", chunk[2])])
        doc = json.loads(pq.ParquetFile(fid_path).metadata.metadata[b"cri"])
        path = doc["files"]["rows"][table["file_id"][0].as_py()][1]
        assert table["offset"][0].as_py() == truth[chunk][1] and truth[chunk][0].endswith(path)

    def kerchunk_ours(chunk):
        ref = lookup_reference(kerchunk_path, "analysed_sst", chunk)
        assert ref["offset"] == truth[chunk][1]

    figures["cri_lookup_pyarrow_ms"] = lookups(cri_pyarrow)
    figures["cri_lookup_pyarrow_evicted_ms"] = lookups(cri_pyarrow, cri_path)
    figures["cri_lookup_duckdb_ms"] = lookups(lambda chunk: cri_duckdb(chunk, shared))
    figures["cri_lookup_duckdb_new_connection_ms"] = lookups(cri_duckdb)
    figures["fileid_lookup_pyarrow_ms"] = lookups(fileid_pyarrow)
    figures["kerchunk_lookup_python_ms"] = lookups(kerchunk_ours)
    figures["kerchunk_lookup_python_evicted_ms"] = lookups(kerchunk_ours, kerchunk_path)
    try:
        from osgeo import gdal

        gdal.UseExceptions()

        def kerchunk_gdal(chunk):
            ds = gdal.OpenEx(f'ZARR:"{kerchunk_path}"', gdal.OF_MULTIDIM_RASTER)
            # GDAL opens the predictor-2 array only as its `_refs_only` variant (same references).
            info = ds.GetRootGroup().OpenMDArray("analysed_sst_refs_only").GetRawBlockInfo(list(chunk))
            assert info.GetOffset() == truth[chunk][1]

        figures["kerchunk_lookup_gdal_ms"] = lookups(kerchunk_gdal)
    except ImportError:
        pass

    per_step = int(np.prod(grid[1:]))

    def step_samples(fn) -> float:
        samples = []
        for t in plan["steps"]:
            start = time.perf_counter()
            n = fn(t)
            samples.append(time.perf_counter() - start)
            assert n == per_step, (n, per_step)
        return median_ms(samples)

    figures["cri_step_pyarrow_ms"] = step_samples(
        lambda t: open_index(cri_path).rows("analysed_sst", 0, [(t, t)]).num_rows)

    def duck_step(t):
        return len(shared.execute(f"SELECT c1, c2, path, \"offset\", length FROM read_parquet('{cri_path}') "
                                  "WHERE variable = 'analysed_sst' AND level = 0 AND c0 = ?", [t]).fetchall())

    figures["cri_step_duckdb_ms"] = step_samples(duck_step)

    def kerchunk_step(t):
        record = 100_000
        first, last = t * per_step, (t + 1) * per_step - 1
        parts = [read_parquet(kerchunk_path / "analysed_sst" / f"refs.{k}.parq")
                 for k in range(first // record, last // record + 1)]
        table = pa.concat_tables(parts)
        return table.slice(first - (first // record) * record, per_step).num_rows

    figures["kerchunk_step_python_ms"] = step_samples(kerchunk_step)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=8660)
    parser.add_argument("--workdir", default=str(Path.home() / ".cache/chunkindex/bench"))
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print one JSON line of figures")
    parser.add_argument("--queries", metavar="DIR", help=argparse.SUPPRESS)  # the fresh query process
    args = parser.parse_args()
    if args.queries:
        print(json.dumps(run_queries(Path(args.queries))))
        return
    root = Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)

    from _step import without_huge_pages  # scripts/_step.py (put on sys.path by ghrsst_scale)
    from ghrsst_scale import make_archive

    from chunkindex.formats import extractor_for
    from chunkindex.indexes.flat import write_cri_parquet
    from chunkindex.indexes.kerchunk import write_kerchunk_parquet
    from chunkindex.pipeline import quick_recipe, store_spec
    from chunkindex.sources.listing import list_sources

    without_huge_pages()
    archive = make_archive(root, args.files)
    recipe = quick_recipe(
        "ghrsst-scale", str(archive), units="days since 1970-01-01", variables=("analysed_sst",),
        pattern="{time:%Y}/{time:%m}/{time:%d}/{time:%Y%m%d}090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1_{variable}.tif",
        headers={"concurrency": 64},
    )
    spec = store_spec(recipe, "/")
    manifest = list_sources(recipe, spec, concurrency=64)
    extractor = extractor_for("cog")
    headers = extractor.read_batch(recipe, spec, manifest)
    assembled = extractor.assemble(recipe, manifest, headers)
    arrays = assembled.arrays
    encoded = sum(a.n_chunks for a in arrays
                  if a.inline is None and "variant_of" not in a.attrs.get("chunkindex", {}))
    full = next(a for a in arrays if a.name == "analysed_sst")

    out = root / f"flat-{args.files}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    figures: dict[str, float] = {}
    kerchunk_path, cri_path, fid_path = out / "index.parq", out / "index.cri.parquet", out / "index-fileid.parquet"
    runs = [timed(write_kerchunk_parquet, arrays, kerchunk_path, 100_000)[0] for _ in range(3)]
    figures["kerchunk_write_s"] = statistics.median(runs)
    runs = [timed(write_cri_parquet, assembled, cri_path, files=manifest)[0] for _ in range(3)]
    figures["cri_write_s"] = statistics.median(runs)
    figures["fileid_write_s"] = timed(write_file_id_variant, assembled, fid_path)[0]
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(cri_path).metadata.num_rows
    figures.update(kerchunk_bytes=folder_size(kerchunk_path), cri_bytes=folder_size(cri_path),
                   fileid_bytes=folder_size(fid_path), cri_rows=rows, kerchunk_refs_encoded=encoded,
                   cri_row_groups=pq.ParquetFile(cri_path).metadata.num_row_groups,
                   cri_footer_bytes=pq.ParquetFile(cri_path).metadata.serialized_size)

    rng = np.random.default_rng(0)
    grid = full.chunk_grid
    picks = [tuple(int(rng.integers(0, g)) for g in grid) for _ in range(args.repeat)]
    steps = [int(rng.integers(0, grid[0])) for _ in range(args.repeat)]
    plan = {"grid": list(grid), "picks": picks, "steps": steps,
            "truth": [[full.urls[full.url_index[np.ravel_multi_index(c, grid)]],
                       int(full.offsets[np.ravel_multi_index(c, grid)])] for c in picks]}
    (out / "plan.json").write_text(json.dumps(plan))
    del arrays, assembled, headers, full
    # Queries run in a fresh interpreter, as a user opening the index would.
    child = subprocess.run([sys.executable, __file__, "--queries", str(out)], capture_output=True, text=True,
                           check=False)
    if child.returncode:
        raise SystemExit(child.stderr)
    figures.update(json.loads(child.stdout.strip().splitlines()[-1]))
    per_step = int(np.prod(grid[1:]))

    if args.json:
        print(json.dumps({"files": args.files, **figures}))
        return
    mb = 1024 * 1024
    print(f"GHRSST-scale archive: {args.files:,} files; {encoded:,} references encoded by each writer "
          f"(CRI rows: {rows:,}; {figures['cri_row_groups']} row groups, footer {figures['cri_footer_bytes'] / 1024:,.0f} kB)")
    print(f"{'':34}{'CRI Parquet':>16}{'Kerchunk Parquet':>20}")
    print(f"{'write (median of 3)':34}{figures['cri_write_s']:>14.2f} s{figures['kerchunk_write_s']:>18.2f} s")
    print(f"{'write rate (refs/s)':34}{encoded / figures['cri_write_s']:>16,.0f}{encoded / figures['kerchunk_write_s']:>20,.0f}")
    print(f"{'size':34}{figures['cri_bytes'] / mb:>13.1f} MB{figures['kerchunk_bytes'] / mb:>17.1f} MB")
    gdal_lookup = figures.get("kerchunk_lookup_gdal_ms")
    print(f"{'one chunk, open + lookup, pyarrow':34}{figures['cri_lookup_pyarrow_ms']:>13.1f} ms"
          f"{figures['kerchunk_lookup_python_ms']:>17.1f} ms (chunkindex's Kerchunk reader)")
    print(f"{'  the same, page cache evicted':34}{figures['cri_lookup_pyarrow_evicted_ms']:>13.1f} ms"
          f"{figures['kerchunk_lookup_python_evicted_ms']:>17.1f} ms")
    print(f"{'one chunk, DuckDB (file cold)':34}{figures['cri_lookup_duckdb_ms']:>13.1f} ms"
          + (f"{gdal_lookup:>17.1f} ms (GDAL ZARR: GetRawBlockInfo, open included)" if gdal_lookup else ""))
    print(f"{'  with a new DuckDB connection':34}{figures['cri_lookup_duckdb_new_connection_ms']:>13.1f} ms")
    print(f"{f'one time step ({per_step:,} refs), pyarrow':34}{figures['cri_step_pyarrow_ms']:>13.1f} ms"
          f"{figures['kerchunk_step_python_ms']:>17.1f} ms (record files sliced)")
    print(f"{'one time step, DuckDB (file cold)':34}{figures['cri_step_duckdb_ms']:>13.1f} ms")
    print(f"(load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"path dictionary vs file_id + files table: {figures['cri_bytes'] / mb:.1f} MB vs "
          f"{figures['fileid_bytes'] / mb:.1f} MB; one-chunk lookup {figures['cri_lookup_pyarrow_ms']:.1f} ms vs "
          f"{figures['fileid_lookup_pyarrow_ms']:.1f} ms (with the path resolved); write "
          f"{figures['cri_write_s']:.2f} s vs {figures['fileid_write_s']:.2f} s")


if __name__ == "__main__":
    main()
