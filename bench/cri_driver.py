"""CRI driver vs GDAL's Zarr driver over Kerchunk Parquet vs GTiff, side by side.

    .venv/bin/python bench/cri_driver.py [--count 365] [--scale 0.25] [--workdir DIR] [--json]

A GHRSST-like archive of `count` daily COGs (DEFLATE, no predictor: the codec
both CRI and `ZARR:` decode) is made of hard links of one COG of
`scale` x the real 36000 x 17999 grid (512-px tiles, overviews), then indexed
twice: Kerchunk Parquet (chunkindex's writer) and CRI (tests/cri_testdata.py
until the project's CRI writer lands). Measured, each the median of three
runs after one warm-up, in this process (GDAL's caches dropped between
runs where they would hide the work):

  open           open the dataset and its array
  rawblockinfo   GetRawBlockInfo for 1,000 random chunks
  window         a 2,048 x 2,048 window of one day
  timeseries     365 days (or `count`) at one pixel
  single window  the same window of one file: CRI (a 1-file index) vs GTiff

`--count 8660 --scale 1` is the GHRSST-scale archive of issue 11 (tens of GB
of hard links of one ~1 GB COG, several minutes to build).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from chunkindex.synthetic.ghrsst import FULL_HEIGHT, FULL_WIDTH, RELATIVE_PATH  # noqa: E402 (after sys.path)


def build_archive(root: Path, count: int, scale: float) -> tuple[list[Path], list[float]]:
    """`count` daily hard links of one DEFLATE COG with a smooth field + noise."""
    from osgeo import gdal

    gdal.UseExceptions()
    h, w = max(512, int(FULL_HEIGHT * scale)), max(512, int(FULL_WIDTH * scale))
    template = root / "template.tif"
    if not template.exists():
        mem = gdal.GetDriverByName("MEM").Create("", w, h, 1, gdal.GDT_Int16)
        mem.SetGeoTransform([-180.0, 360.0 / w, 0.0, 90.0, 0.0, -180.0 / h])
        mem.SetProjection("EPSG:4326")
        band = mem.GetRasterBand(1)
        band.SetNoDataValue(-32768)
        band.SetScale(0.001)
        band.SetOffset(25.0)
        rng = np.random.default_rng(1)
        for y0 in range(0, h, 1024):
            rows = min(1024, h - y0)
            yy, xx = np.mgrid[y0:y0 + rows, 0:w]
            block = (3000 * np.sin(xx / 400.0) * np.cos(yy / 300.0) + rng.integers(0, 50, (rows, w)))
            band.WriteArray(block.astype(np.int16), 0, y0)
        gdal.Translate(str(template), mem, format="COG",
                       creationOptions=["COMPRESS=DEFLATE", "PREDICTOR=NO", "BLOCKSIZE=512",
                                        "OVERVIEW_RESAMPLING=NEAREST"])
    start = dt.date(2002, 6, 1)
    tifs, times = [], []
    for day in range(count):
        date = start + dt.timedelta(days=day)
        path = root / "archive" / RELATIVE_PATH.format(date=date, variable="analysed_sst")
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(template, path)
        tifs.append(path)
        times.append(float((date - dt.date(1970, 1, 1)).days) + 0.375)
    return tifs, times


def build_indexes(root: Path, tifs: list[Path], times: list[float]) -> dict[str, Path]:
    from chunkindex.pipeline import quick_recipe, run_recipe
    from tests.cri_testdata import cri_from_tiff, cri_from_tiff_series

    out: dict[str, Path] = {}
    kerchunk = root / "index" / "bench.parq"
    if not kerchunk.exists():
        recipe = quick_recipe(
            "bench", str(root / "archive"),
            pattern="{time:%Y}/{time:%m}/{time:%d}/{time:%Y%m%d}090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1_{variable}.tif",
            variables=("analysed_sst",), units="days since 1970-01-01", record_size=100000)
        run_recipe(recipe, REPO, root / "index", validate=False)
    out["kerchunk"] = kerchunk
    cri = root / "index" / "bench.cri.parquet"
    if not cri.exists():
        from osgeo import gdal

        # One row group per day, as the spec recommends (§1.3).
        first = gdal.Open(str(tifs[0]))
        b = first.GetRasterBand(1)
        bx, by = b.GetBlockSize()
        per_day = -(-b.XSize // bx) * -(-b.YSize // by)
        cri_from_tiff_series(tifs, times, cri, variable="analysed_sst", row_group_size=max(1024, per_day))
    out["cri"] = cri
    single = root / "index" / "single.cri.parquet"
    if not single.exists():
        cri_from_tiff(tifs[0], single, variable="analysed_sst")
    out["single"] = single
    return out


def timed(fn, runs: int = 3) -> tuple[float, float]:
    """(cold first run, median of `runs` after it) in seconds."""
    t0 = time.perf_counter()
    fn()
    cold = time.perf_counter() - t0
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return cold, statistics.median(samples)


def measure_kind(opener, kind: str, blocks: list[list[int]], window: tuple[int, int, int],
                 pixel: tuple[int, int, int]) -> tuple[dict[str, float], tuple[np.ndarray, np.ndarray]]:
    """Figures of one reader; also returns the window and series it read."""
    y0, x0, win = window
    py, px, days = pixel
    fig: dict[str, float] = {}
    # The first open of this index in the process is the cold one.
    start = time.perf_counter()
    opener(kind)
    first = time.perf_counter() - start
    _, fig["open"] = timed(lambda: opener(kind))
    fig["open_cold"] = first
    _, arr = opener(kind)

    def rawinfo() -> None:
        for b in blocks:
            arr.GetRawBlockInfo(b)

    fig["rawblockinfo_cold"], fig["rawblockinfo"] = timed(rawinfo, runs=1)

    # A fresh dataset each run: no decoded chunk is reused.
    def read_window() -> np.ndarray:
        return opener(kind)[1].ReadAsArray(array_start_idx=[0, y0, x0], count=[1, win, win])

    def read_series() -> np.ndarray:
        return opener(kind)[1].ReadAsArray(array_start_idx=[0, py, px], count=[days, 1, 1])

    fig["window_cold"], fig["window"] = timed(read_window)
    fig["timeseries_cold"], fig["timeseries"] = timed(read_series)
    return fig, (read_window(), read_series())


def measure(indexes: dict[str, Path], tifs: list[Path], count: int) -> dict[str, dict[str, float]]:
    from osgeo import gdal

    gdal.UseExceptions()
    gdal.SetCacheMax(64 << 20)
    results: dict[str, dict[str, float]] = {}

    def opener(kind: str):
        if kind == "cri":
            ds = gdal.OpenEx(f'CRI:"{indexes["cri"]}"', gdal.OF_MULTIDIM_RASTER)
        else:
            ds = gdal.OpenEx(f'ZARR:"{indexes["kerchunk"]}"', gdal.OF_MULTIDIM_RASTER)
        return ds, ds.GetRootGroup().OpenMDArray("analysed_sst")

    # The grid from the source COG (opening either index here would make
    # their first timed open a warm one).
    first = gdal.Open(str(tifs[0]))
    nt, ny, nx = len(tifs), first.RasterYSize, first.RasterXSize
    bx, by = first.GetRasterBand(1).GetBlockSize()
    rng = random.Random(11)
    blocks = [[rng.randrange(nt), rng.randrange(-(-ny // by)), rng.randrange(-(-nx // bx))] for _ in range(1000)]
    win = min(2048, ny, nx)
    y0, x0 = (ny - win) // 2 // by * by + 7, (nx - win) // 2 // bx * bx + 13  # unaligned, like a user's window
    y0, x0 = min(y0, ny - win), min(x0, nx - win)
    py, px = ny // 3, nx // 3
    days = min(365, nt)
    expected = {}
    for kind in ("cri", "zarr"):
        results[kind], expected[kind] = measure_kind(opener, kind, blocks, (y0, x0, win), (py, px, days))
    assert np.array_equal(expected["cri"][0], expected["zarr"][0]), "CRI and ZARR windows differ"
    assert np.array_equal(expected["cri"][1], expected["zarr"][1]), "CRI and ZARR time series differ"

    # One file: CRI classic vs GTiff on the COG itself.
    def read_window(path: str):
        d = gdal.Open(path)
        return d.GetRasterBand(1).ReadAsArray(x0, y0, win, win)

    single: dict[str, float] = {}
    single["cri_cold"], single["cri"] = timed(
        lambda: read_window(f'CRI:"{indexes["single"]}":analysed_sst'))
    single["gtiff_cold"], single["gtiff"] = timed(lambda: read_window(str(tifs[0])))
    assert np.array_equal(read_window(f'CRI:"{indexes["single"]}":analysed_sst'), read_window(str(tifs[0])))
    results["single_window"] = single
    results["shape"] = {"time": nt, "y": ny, "x": nx, "window": win, "days": days}
    return results


def table(r: dict) -> str:
    c, z, s = r["cri"], r["zarr"], r["single_window"]
    lines = [
        f"archive: {r['shape']['time']} files of {r['shape']['y']} x {r['shape']['x']} (DEFLATE, 512-px tiles)",
        "",
        "median of 3 after a first run (the first, cold, run in brackets)",
        "",
        "| figure | CRI | ZARR: (Kerchunk Parquet) | CRI / ZARR |",
        "|---|---:|---:|---:|",
    ]
    for key, label in (("open", "open dataset + array"), ("rawblockinfo", "GetRawBlockInfo x 1,000 random chunks"),
                       ("window", f"{r['shape']['window']}^2 window of one day"),
                       ("timeseries", f"{r['shape']['days']}-day time series at one pixel")):
        lines.append(f"| {label} | {c[key] * 1000:.1f} ms ({c[key + '_cold'] * 1000:.1f}) | "
                     f"{z[key] * 1000:.1f} ms ({z[key + '_cold'] * 1000:.1f}) | {c[key] / z[key]:.2f} |")
    lines += ["", "| single file window | CRI | GTiff | CRI / GTiff |", "|---|---:|---:|---:|",
              (f"| {r['shape']['window']}^2 window | {s['cri'] * 1000:.1f} ms | {s['gtiff'] * 1000:.1f} ms | "
              f"{s['cri'] / s['gtiff']:.2f} |")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=365)
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    root = args.workdir or Path(tempfile.gettempdir()) / f"cri-bench-{args.count}-{args.scale}"
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tifs, times = build_archive(root, args.count, args.scale)
    indexes = build_indexes(root, tifs, times)
    print(f"[bench] archive and indexes ready in {time.perf_counter() - t0:.1f} s ({root})", file=sys.stderr)
    results = measure(indexes, tifs, args.count)
    print(json.dumps(results) if args.json else table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
