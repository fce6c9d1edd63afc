"""A BRAN2023-like archive at full scale, cheaply (benchmarks).

`count` monthly NetCDF4 files (`ocean_YYYY_MM.nc`), each holding four daily
variables (`temp`, `salt`, `u`, `v`: Int16, `Time x st_ocean x yt_ocean x
xt_ocean` = days x 51 x 1500 x 3600 at scale 1, chunks 1 x 1 x 300 x 300,
packed with scale_factor/add_offset as BRAN2023's), i.e. ~93,000 chunks per
variable and month: 180 months are ~67 M chunk references.

Every chunk holds the same constant field, so one chunk is compressed once
and its bytes are written for every other chunk with HDF5's direct chunk
write (no data is encoded per chunk). The codec is shuffle + Zstandard (HDF5
filter 32015, hdf5plugin) rather than the real archive's shuffle + zlib: a
constant 300 x 300 chunk is ~20 bytes in Zstandard but ~200 in zlib, whose
floor would make the full archive ~19 GB instead of ~5 GB; the index does
not depend on the codec. netCDF4 lays each file out as the real archive's
(then ~80 bytes a chunk on disk with HDF5's B-tree). One file is made per
month length (28-31 days); the others are copies of it whose `Time` values
are rewritten in place, so generation is a file copy per month.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np

from chunkindex.synthetic.bran import (
    EPOCH,
    FULL_DEPTHS,
    TEMP_FILL,
    TIME_UNITS,
    VALID_RANGE,
    depth_levels,
    horizontal_axes,
    month_days,
)
from chunkindex.synthetic.manifest import FixtureSet

CHUNK_YX = 300
# name -> (long name, units, scale_factor, add_offset, packed value range to draw the constant from)
VARIABLES = {
    "temp": ("Potential temperature", "degrees C", 0.007782219909131527, 245.0, (-31000, -30000)),
    "salt": ("Practical Salinity", "psu", 0.0007782219909131527, 25.0, (12000, 14000)),
    "u": ("i-current", "m/sec", 0.0006103702, 0.0, (-500, 500)),
    "v": ("j-current", "m/sec", 0.0006103702, 0.0, (-500, 500)),
}


def file_name(year: int, month: int) -> str:
    return f"ocean_{year:04d}_{month:02d}.nc"


def months(start: str, count: int) -> list[tuple[int, int]]:
    """`count` consecutive (year, month) from `start` (YYYY-MM)."""
    year, month = (int(part) for part in start.split("-")[:2])
    out = []
    for _ in range(count):
        out.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def time_values(year: int, month: int, days: int) -> np.ndarray:
    """Daily means at noon, in days since 1979-01-01 (as BRAN2023's `Time`)."""
    first = (dt.date(year, month, 1) - EPOCH).days
    return np.arange(first, first + days, dtype=np.float64) + 0.5


def write_template(path: Path, seed: int, year: int, month: int, days: int, scale: float, n_depths: int) -> None:
    """One monthly file with every chunk of every variable written (constant per variable).

    netCDF4 lays the file out (dimensions, coordinates, attributes, the
    variables' filters); h5py then writes the one encoded chunk of each
    variable everywhere else with HDF5's direct chunk write."""
    import h5py
    import hdf5plugin  # noqa: F401  registers the Zstandard filter for h5py
    import netCDF4

    yt, xt = horizontal_axes(scale)
    depths = depth_levels(n_depths)
    chunk = (1, 1, min(CHUNK_YX, yt.size), min(CHUNK_YX, xt.size))
    shape = (days, depths.size, yt.size, xt.size)
    rng = np.random.default_rng(seed)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncattr("title", "BRAN2023-like synthetic ocean state at full scale (chunkindex benchmark)")
        nc.setncattr("grid_type", "regular")
        nc.createDimension("Time", None)
        for name, size in (("st_ocean", depths.size), ("yt_ocean", yt.size), ("xt_ocean", xt.size)):
            nc.createDimension(name, size)
        for name, values, attrs in (
            ("Time", time_values(year, month, days),
             {"long_name": "Time", "units": TIME_UNITS, "cartesian_axis": "T",
              "calendar_type": "GREGORIAN", "calendar": "gregorian"}),
            ("st_ocean", depths, {"long_name": "tcell zstar depth", "units": "meters",
                                  "cartesian_axis": "Z", "positive": "down"}),
            ("yt_ocean", yt, {"long_name": "tcell latitude", "units": "degrees_N", "cartesian_axis": "Y"}),
            ("xt_ocean", xt, {"long_name": "tcell longitude", "units": "degrees_E", "cartesian_axis": "X"}),
        ):
            axis = nc.createVariable(name, "f8", (name,))
            axis.setncatts(attrs)
            axis[:] = values
        for name, (long_name, units, scale_factor, add_offset, (low, high)) in VARIABLES.items():
            var = nc.createVariable(name, "i2", ("Time", "st_ocean", "yt_ocean", "xt_ocean"),
                                    compression="zstd", complevel=1, shuffle=True, chunksizes=chunk,
                                    fill_value=TEMP_FILL)
            var.set_auto_maskandscale(False)  # packed values are written as they are
            var.setncatts({
                "long_name": long_name, "units": units, "valid_range": VALID_RANGE,
                "missing_value": TEMP_FILL, "packing": np.int32(4), "cell_methods": "time: mean Time: mean",
                "scale_factor": np.float64(scale_factor), "add_offset": np.float64(add_offset),
            })
            var[0, 0, : chunk[2], : chunk[3]] = np.full(chunk[2:], rng.integers(low, high), np.int16)
    with h5py.File(path, "r+") as h5:
        for name in VARIABLES:
            var = h5[name]
            if var.shape[0] < days:
                var.resize(days, axis=0)
            mask, encoded = var.id.read_direct_chunk((0, 0, 0, 0))
            for index in np.ndindex(*(-(-s // c) for s, c in zip(shape, chunk))):
                if any(index):
                    offset = tuple(int(i) * c for i, c in zip(index, chunk))
                    var.id.write_direct_chunk(offset, encoded, mask)


def generate(fixture_set: FixtureSet, folder: Path) -> None:
    """Write `count` consecutive monthly files from `start` (YYYY-MM) into `folder`."""
    import h5py

    opts = fixture_set.options
    scale = float(opts.get("scale", 1.0))
    n_depths = int(opts.get("depth_levels", FULL_DEPTHS))
    templates: dict[int, Path] = {}
    for year, month in months(str(opts.get("start", "1994-01")), int(opts.get("count", 180))):
        days = int(opts.get("days_per_month") or month_days(year, month))
        path = folder / file_name(year, month)
        if days not in templates:
            templates[days] = folder / ".templates" / f"month-{days}.nc"
            templates[days].parent.mkdir(exist_ok=True)
            write_template(templates[days], fixture_set.seed, 1979, 1, days, scale, n_depths)
        shutil.copyfile(templates[days], path)
        with h5py.File(path, "r+") as h5:
            h5["Time"][:] = time_values(year, month, days)  # the same size: rewritten in place
    shutil.rmtree(folder / ".templates")
