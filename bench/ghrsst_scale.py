"""Benchmark: the COG pipeline at GHRSST catalogue scale.

Makes (once, cached) 8,660 daily GHRSST-named COGs with the full-size header
and tile grid (36000 x 17999 in 512 x 512 tiles: 2,556 tiles, plus overviews
2-32) as hard links of one real COG with constant tiles, then times listing,
header extraction (async-tiff), assembly and Kerchunk Parquet writing with the
library's own functions, and prints files/s, refs/s and peak memory.

    .venv/bin/python bench/ghrsst_scale.py [--files 8660] [--no-overviews] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from chunkindex.synthetic.ghrsst import RELATIVE_PATH, write_cog

# The workflow's job-process settings (scripts/_step.py), applied here as in a job.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))


def make_archive(root: Path, files: int, compression: str = "ZSTD", predictor: int = 2) -> Path:
    """`files` hard links of one full-size COG under GHRSST's names."""
    import numpy as np

    variant = "" if (compression, predictor) == ("ZSTD", 2) else f"-{compression.lower()}-pred{predictor}"
    template = root / f"template{variant}.tif"
    if not template.exists():
        data = np.full((17999, 36000), 1234, dtype=np.int16)
        write_cog(template.with_suffix(".partial.tif"), data, 1.0, compression, predictor, nodata=-32768,
                  band_scale=0.001, band_offset=25.0, resampling="NEAREST")
        template.with_suffix(".partial.tif").rename(template)
    archive = root / f"archive{variant}-{files}"
    marker = archive / ".complete"
    if marker.exists():
        return archive
    start = dt.date(2002, 6, 1)
    for day in range(files):
        date = start + dt.timedelta(days=day)
        path = archive / RELATIVE_PATH.format(date=date, variable="analysed_sst")
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.link(template, path)
    marker.touch()
    return archive


def timed_steps(recipe, workdir: Path, limit: int | None = None,
                keep: Path | None = None) -> tuple[dict[str, float], list]:
    """List, read headers, assemble and write Kerchunk Parquet, timing each step.

    `limit` keeps the first files of the listing; `keep` is where the index is
    written (a temporary folder otherwise)."""
    from _step import without_huge_pages

    from chunkindex.formats import extractor_for
    from chunkindex.indexes.kerchunk import write_kerchunk_parquet

    without_huge_pages()  # as the workflow's steps do
    from chunkindex.pipeline import store_spec
    from chunkindex.sources.listing import list_sources

    timings: dict[str, float] = {}
    spec = store_spec(recipe, "/")
    t = time.perf_counter()
    manifest = list_sources(recipe, spec)
    if limit is not None:
        manifest = manifest.slice(0, limit)
    timings["list"] = time.perf_counter() - t
    extractor = extractor_for(recipe.format)
    t = time.perf_counter()
    headers = extractor.read_batch(recipe, spec, manifest)
    timings["headers"] = time.perf_counter() - t
    t = time.perf_counter()
    arrays = extractor.assemble(recipe, manifest, headers).arrays
    timings["assemble"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        t = time.perf_counter()
        write_kerchunk_parquet(arrays, (keep or Path(tmp)) / "index.parq", 100_000)
        timings["kerchunk_parquet"] = time.perf_counter() - t
    return timings, arrays


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=8660)
    parser.add_argument("--no-overviews", action="store_true", help="index full resolution only")
    parser.add_argument("--workdir", default=str(Path.home() / ".cache/chunkindex/bench"))
    parser.add_argument("--json", action="store_true", help="print one JSON line of figures")
    args = parser.parse_args()
    root = Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    archive = make_archive(root, args.files)
    print(f"archive: {args.files:,} files under {archive} (ready in {time.perf_counter() - start:.1f} s)")

    from chunkindex.pipeline import quick_recipe

    recipe = quick_recipe(
        "ghrsst-scale", str(archive), units="days since 1970-01-01", variables=("analysed_sst",),
        pattern="{time:%Y}/{time:%m}/{time:%d}/{time:%Y%m%d}090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1_{variable}.tif",
        headers={"concurrency": 64},
    )
    if args.no_overviews:
        from dataclasses import replace

        recipe = replace(recipe, output=replace(recipe.output, overviews=False))
    timings, arrays = timed_steps(recipe, root)
    assembled_arrays = arrays
    refs = sum(a.n_chunks for a in assembled_arrays if a.inline is None)
    # _refs_only variants share their array's reference files (hard links):
    # the writing rate counts only references encoded.
    encoded = sum(a.n_chunks for a in assembled_arrays
                  if a.inline is None and "variant_of" not in a.attrs.get("chunkindex", {}))
    full = next(a for a in assembled_arrays if a.name == "analysed_sst").n_chunks
    total = sum(timings.values())
    if args.json:
        import json

        print(json.dumps({"files": args.files, "refs": refs, "refs_encoded": encoded, "full_resolution_refs": full,
                          "seconds": timings,
                          "total_seconds": total, "peak_memory_mb": peak_rss_mb()}))
        return
    print(f"references: {refs:,} ({full:,} at full resolution, {refs - full:,} in overviews and _refs_only variants)")
    for step, seconds in timings.items():
        rate = {"list": f"{args.files / seconds:,.0f} files/s", "headers": f"{args.files / seconds:,.0f} files/s",
                "assemble": f"{refs / seconds:,.0f} refs/s", "kerchunk_parquet": f"{encoded / seconds:,.0f} refs/s encoded"}[step]
        print(f"  {step:<17} {seconds:7.2f} s   {rate}")
    print(f"  {'total':<17} {total:7.2f} s   {refs / total:,.0f} refs/s end to end; peak memory {peak_rss_mb():,.0f} MB")
    print(f"seed figure for comparison: VirtualiZarr ~13 min for 8,660 files; this run: {total:.1f} s "
          f"({13 * 60 / total * args.files / 8660:,.0f}x faster, scaled to 8,660 files)")


if __name__ == "__main__":
    main()
