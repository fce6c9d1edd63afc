"""What the client tests compare against: GDAL's reads of the demo sources,
the arrays of an index, and the readers a user would open it with.

Every expected value here comes from the source files through GDAL (the
COG or netCDF driver), never from the index under test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

# Demo dataset -> (fixture set, source format).
DEMO_SOURCES = {
    "ghrsst-demo": "ghrsst-zstd-pred2",
    "ghrsst-demo-deflate": "ghrsst-deflate-pred1",
    "bran-demo": "bran",
}
# Edge-case TIFFs the indexer accepts (tests/test_cog_files.py refuses the others).
EDGE_TIFFS = ["multiband-pixel.tif", "multiband-band.tif", "bigtiff.tif", "big-endian.tif", "sparse.tif",
              "lzw.tif", "uncompressed.tif"]


def metadata(index: Path) -> dict[str, Any]:
    """The consolidated metadata of a Kerchunk Parquet folder."""
    return json.loads((Path(index) / ".zmetadata").read_text())["metadata"]


def array_names(index: Path) -> list[str]:
    """Every array of an index (full paths inside the Zarr hierarchy)."""
    return sorted(k[: -len("/.zarray")] for k in metadata(index) if k.endswith("/.zarray"))


def is_refs_only(index: Path, name: str) -> bool:
    """Whether an array carries references only (its pixels are not decodable)."""
    attrs = metadata(index).get(f"{name}/.zattrs", {})
    return bool(attrs.get("chunkindex", {}).get("refs_only") or name.endswith("_refs_only")
                or "/refs_only/" in f"/{name}/")


def data_arrays(index: Path) -> list[str]:
    """Arrays with a chunk grid of more than one inline chunk, decodable by a reader."""
    meta = metadata(index)
    out = []
    for name in array_names(index):
        zarray = meta[f"{name}/.zarray"]
        if len(zarray["shape"]) >= 2 and not is_refs_only(index, name):
            out.append(name)
    return out


def chunk_grid(zarray: dict[str, Any]) -> tuple[int, ...]:
    return tuple(math.ceil(s / c) for s, c in zip(zarray["shape"], zarray["chunks"]))


def sample_chunk_keys(zarray: dict[str, Any], n: int, seed: int) -> list[tuple[int, ...]]:
    """Up to `n` chunk indices of an array, first and last always included."""
    grid = chunk_grid(zarray)
    total = int(np.prod(grid))
    rng = np.random.default_rng(seed)
    numbers = {0, total - 1} | set(rng.integers(0, total, size=min(n, total)).tolist())
    return [tuple(int(i) for i in np.unravel_index(k, grid)) for k in sorted(numbers)]


def parquet_reference(index: Path, name: str, key: tuple[int, ...]) -> tuple[str | None, int, int, bytes | None]:
    """(path, offset, size, raw) of one chunk, read from the record file with pyarrow."""
    import pyarrow.parquet as pq

    doc = json.loads((Path(index) / ".zmetadata").read_text())
    zarray = doc["metadata"][f"{name}/.zarray"]
    number = int(np.ravel_multi_index(key, chunk_grid(zarray))) if key else 0
    record, row = divmod(number, doc["record_size"])
    table = pq.read_table(Path(index) / name / f"refs.{record}.parq")
    r = table.slice(row, 1).to_pylist()[0]
    return r["path"], r["offset"], r["size"], r["raw"]


def cf_decoded(raw: np.ndarray, scale: float | None, offset: float | None, nodata: float | None) -> np.ndarray:
    """What xarray's CF decoding makes of raw values: fill -> NaN, then x scale + offset."""
    if scale is None and offset is None and nodata is None:
        return raw
    out = raw.astype(np.float64)
    if nodata is not None:
        out[raw == nodata] = np.nan
    return out * (1.0 if scale is None else scale) + (0.0 if offset is None else offset)


def cog_files(fixtures_root: Path, fixture_set: str, variable: str) -> list[Path]:
    """The daily COGs of one variable, in time order (the names carry the date)."""
    return sorted((fixtures_root / fixture_set).rglob(f"*_{variable}.tif"))


_OPENED: dict[str, Any] = {}  # datasets stay open while their bands are used


def cog_band_of_width(gdal: Any, path: Path, width: int, band: int = 1) -> Any:
    """The band (full resolution or the overview) of `path` that is `width` pixels wide."""
    ds = _OPENED.setdefault(str(path), gdal.Open(str(path)))
    b = ds.GetRasterBand(band)
    if b.XSize == width:
        return b
    for i in range(b.GetOverviewCount()):
        if b.GetOverview(i).XSize == width:
            return b.GetOverview(i)
    raise AssertionError(f"{path} has no level {width} pixels wide")


def cog_window(gdal: Any, path: Path, width: int, ys: slice, xs: slice) -> tuple[np.ndarray, Any]:
    """Raw values of a window of the level `width` wide, and that level's band."""
    band = cog_band_of_width(gdal, path, width)
    return band.ReadAsArray(xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start), band


def bran_files(fixtures_root: Path) -> list[Path]:
    return sorted((fixtures_root / "bran").glob("ocean_temp_*.nc"))


def bran_source_step(gdal: Any, files: list[Path], t: int) -> tuple[Any, int]:
    """The source netCDF array holding global time step `t`, and the step within it."""
    for path in files:
        arr = gdal.OpenEx(str(path), gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("temp")
        n = arr.GetDimensions()[0].GetSize()
        if t < n:
            return arr, t
        t -= n
    raise AssertionError(f"time step beyond the {len(files)} source files")


def source_chunk_values(gdal: Any, fixtures_root: Path, dataset: str, name: str, zarray: dict[str, Any],
                        key: tuple[int, ...]) -> tuple[np.ndarray, float | None, float | None, float | None]:
    """Raw source values of one chunk of a demo array (clipped at the array's
    edge), with the source's scale, offset and nodata as GDAL reports them."""
    chunks, shape = zarray["chunks"], zarray["shape"]
    start = [k * c for k, c in zip(key, chunks)]
    stop = [min(s + c, n) for s, c, n in zip(start, chunks, shape)]
    if dataset == "bran-demo":
        arr, t = bran_source_step(gdal, bran_files(fixtures_root), start[0])
        raw = arr.ReadAsArray(array_start_idx=[t] + start[1:],
                              count=[1] + [b - a for a, b in zip(start[1:], stop[1:])])
        nodata = arr.GetNoDataValueAsDouble()
        return raw, arr.GetScale(), arr.GetOffset(), nodata
    variable = name.split("/")[-1].split("_ovr")[0]
    files = cog_files(fixtures_root, DEMO_SOURCES[dataset], variable)
    raw, band = cog_window(gdal, files[start[0]], shape[2], slice(start[1], stop[1]), slice(start[2], stop[2]))
    return raw[None], band.GetScale(), band.GetOffset(), band.GetNoDataValue()


def gdal_cli(*args: str) -> str:
    """Run one of GDAL's command-line programs (the venv's, else PATH's) and
    return its stdout: no Python on the read path."""
    exe = Path(sys.executable).with_name(args[0])
    result = subprocess.run([str(exe) if exe.exists() else args[0], *args[1:]], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, f"{' '.join(args)}: {result.stderr[-3000:]}"
    return result.stdout
