"""BRAN2023-like monthly NetCDF4 files (`ocean_temp_YYYY_MM.nc`).

As in the real archive: dimensions `Time` (unlimited, one step per day of the
month), `st_ocean`, `yt_ocean`, `xt_ocean` (full size 51 x 1500 x 3600), Int16
`temp` packed with scale_factor 0.007782219909131527 and add_offset 245.0,
`_FillValue` = `missing_value` = -32768, `valid_range`, chunks 1 x 1 x 300 x 300
compressed with shuffle + zlib level 1, Float64 coordinates, and `Time` in
"days since 1979-01-01".
"""

from __future__ import annotations

import calendar
import datetime as dt
from pathlib import Path

import numpy as np

from chunkindex.synthetic.manifest import FixtureSet

FULL_Y, FULL_X, FULL_DEPTHS = 1500, 3600, 51
TEMP_SCALE = 0.007782219909131527
TEMP_OFFSET = 245.0
TEMP_FILL = np.int16(-32768)
VALID_RANGE = np.array([-32767, 32767], dtype=np.int16)
CHUNKS = (1, 1, 300, 300)
TIME_UNITS = "days since 1979-01-01 00:00:00"
EPOCH = dt.date(1979, 1, 1)
# The first BRAN2023 `st_ocean` levels (metres); deeper levels extend the spacing.
BRAN_DEPTHS = [2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 32.5, 37.5, 42.5, 47.5, 52.5, 57.5, 62.5,
               67.5, 72.5, 77.5, 82.5, 87.5, 92.5, 97.5, 103.0, 109.0, 116.0, 125.0, 136.0]


def depth_levels(count: int) -> np.ndarray:
    depths = list(BRAN_DEPTHS[:count])
    while len(depths) < count:
        depths.append(round(depths[-1] * 1.25, 1))
    return np.asarray(depths, dtype=np.float64)


def month_days(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def file_name(year: int, month: int) -> str:
    return f"ocean_temp_{year:04d}_{month:02d}.nc"


def horizontal_axes(scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(yt_ocean, xt_ocean) cell centres at `scale` (1.0 = 1500 x 3600 at 0.1 degree)."""
    ny, nx = max(1, round(FULL_Y * scale)), max(1, round(FULL_X * scale))
    dy, dx = 150.0 / ny, 360.0 / nx
    yt = -75.0 + (np.arange(ny) + 0.5) * dy
    xt = (np.arange(nx) + 0.5) * dx
    return yt, xt


def temperature_field(
    seed: int, yt: np.ndarray, xt: np.ndarray, depths: np.ndarray, day_number: int
) -> np.ndarray:
    """Packed Int16 temperature (depth, y, x) of one day; land is the fill value."""
    lat, lon = np.deg2rad(yt)[:, None], np.deg2rad(xt)[None, :]
    land_rng = np.random.default_rng([seed, 10])
    land_field = np.zeros((yt.size, xt.size))
    for _ in range(8):
        k = land_rng.integers(1, 6, size=2)
        phase = land_rng.uniform(0, 2 * np.pi, size=2)
        land_field += np.cos(k[0] * lon + phase[0]) * np.cos(k[1] * lat + phase[1])
    land = land_field / 8 > 0.22
    surface = 28.0 * np.cos(lat) ** 2 - 1.0 + 1.5 * np.sin(2 * lon + day_number / 58.0)
    rng = np.random.default_rng([seed, 11, day_number])
    out = np.empty((depths.size, yt.size, xt.size), dtype=np.int16)
    for k, depth in enumerate(depths):
        temp = surface * np.exp(-depth / 900.0) + 2.0 + rng.normal(0, 0.05, size=surface.shape)
        packed = np.rint((temp - TEMP_OFFSET) / TEMP_SCALE).clip(-32767, 32767).astype(np.int16)
        packed[land] = TEMP_FILL
        out[k] = packed
    return out


def write_month(
    path: Path,
    seed: int,
    year: int,
    month: int,
    scale: float,
    n_depths: int,
    days: int | None = None,
    chunks: tuple[int, int, int, int] = CHUNKS,
    skip_chunks: bool = False,
) -> None:
    """Write one monthly file. `skip_chunks` leaves the first horizontal chunk
    of every even day unwritten (never-written chunks read as the fill value)."""
    import netCDF4

    yt, xt = horizontal_axes(scale)
    depths = depth_levels(n_depths)
    n_days = days or month_days(year, month)
    first_day = (dt.date(year, month, 1) - EPOCH).days
    chunks = (chunks[0], min(chunks[1], n_depths), min(chunks[2], yt.size), min(chunks[3], xt.size))
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncattr("title", "BRAN2023-like synthetic ocean temperature (chunkindex fixture)")
        nc.setncattr("grid_type", "regular")
        nc.createDimension("Time", None)
        nc.createDimension("st_ocean", depths.size)
        nc.createDimension("yt_ocean", yt.size)
        nc.createDimension("xt_ocean", xt.size)
        time = nc.createVariable("Time", "f8", ("Time",))
        time.setncatts({"long_name": "Time", "units": TIME_UNITS, "cartesian_axis": "T",
                        "calendar_type": "GREGORIAN", "calendar": "gregorian"})
        for name, values, attrs in (
            ("st_ocean", depths, {"long_name": "tcell zstar depth", "units": "meters",
                                  "cartesian_axis": "Z", "positive": "down"}),
            ("yt_ocean", yt, {"long_name": "tcell latitude", "units": "degrees_N",
                              "cartesian_axis": "Y"}),
            ("xt_ocean", xt, {"long_name": "tcell longitude", "units": "degrees_E",
                              "cartesian_axis": "X"}),
        ):
            var = nc.createVariable(name, "f8", (name,))
            var.setncatts(attrs)
            var[:] = values
        temp = nc.createVariable(
            "temp", "i2", ("Time", "st_ocean", "yt_ocean", "xt_ocean"),
            zlib=True, complevel=1, shuffle=True, chunksizes=chunks, fill_value=TEMP_FILL,
        )
        # Packed values are written as they are: no automatic scaling on write.
        temp.set_auto_maskandscale(False)
        temp.setncatts({
            "long_name": "Potential temperature", "units": "degrees C",
            "valid_range": VALID_RANGE, "missing_value": TEMP_FILL,
            "packing": np.int32(4), "cell_methods": "time: mean Time: mean",
            "time_avg_info": "average_T1,average_T2,average_DT",
            "standard_name": "sea_water_potential_temperature",
            "scale_factor": np.float64(TEMP_SCALE), "add_offset": np.float64(TEMP_OFFSET),
        })
        time[:] = np.arange(first_day, first_day + n_days, dtype=np.float64) + 0.5
        cy, cx = chunks[2], chunks[3]
        for day in range(n_days):
            field = temperature_field(seed, yt, xt, depths, first_day + day)
            if skip_chunks and day % 2 == 0:
                # Write everything but the first horizontal chunk, chunk-aligned.
                temp[day, :, :, cx:] = field[:, :, cx:]
                if yt.size > cy:
                    temp[day, :, cy:, :cx] = field[:, cy:, :cx]
            else:
                temp[day] = field


def generate(fixture_set: FixtureSet, folder: Path) -> None:
    """Write `count` consecutive monthly files from `start` (YYYY-MM) into `folder`."""
    opts = fixture_set.options
    scale = float(opts.get("scale", 0.1))
    year, month = (int(part) for part in str(opts.get("start", "2023-01")).split("-")[:2])
    count = int(opts.get("count", 2))
    n_depths = int(opts.get("depth_levels", 3))
    days = opts.get("days_per_month")
    for _ in range(count):
        write_month(folder / file_name(year, month), fixture_set.seed, year, month, scale,
                    n_depths, days=int(days) if days else None)
        month += 1
        if month == 13:
            year, month = year + 1, 1
