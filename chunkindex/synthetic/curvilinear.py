"""ROMS/NEMO-like curvilinear ocean-model output: monthly NetCDF4 files on a
rotated, stretched grid with 2-D longitude/latitude (CF `coordinates`).

The grid is laid out in the plane tangent to the Earth at its centre
(175 E, 40 S by default: it crosses the antimeridian, as New Zealand
regional models do), rotated by `rotation` degrees, with cell sizes
stretched by a tanh profile (finer near the coast at the grid's western
edge), and mapped to the sphere by the inverse gnomonic projection.
Longitudes are stored 0..360, as ROMS does.

Each file `roms_his_<yyyy>_<mm>.nc`: `temp(ocean_time, s_rho, eta_rho,
xi_rho)` Int16 packed (scale_factor/add_offset), chunks 1 x 1 x 50 x 60,
shuffle + zlib; `lon_rho`/`lat_rho(eta_rho, xi_rho)` Float64;
`ocean_time` in seconds since 2000-01-01.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from chunkindex.geo.grids import xyz_to_lonlat
from chunkindex.synthetic.manifest import FixtureSet

EARTH_RADIUS_KM = 6371.0
CHUNKS = (1, 1, 50, 60)
TEMP_SCALE = 0.001
TEMP_OFFSET = 15.0
TEMP_FILL = np.int16(-32768)


def roms_grid(eta: int, xi: int, centre_lon: float = 175.0, centre_lat: float = -40.0,
              rotation: float = 30.0, size_km: tuple[float, float] = (1200.0, 1800.0)) -> tuple[np.ndarray, np.ndarray]:
    """Longitude (0..360) and latitude of the (eta, xi) cell centres."""
    s = (np.arange(xi) + 0.5) / xi
    stretched_x = (np.tanh(2.5 * (s - 1)) / np.tanh(2.5) + 1)  # 0..1, finer near s = 0
    v = (np.arange(eta) + 0.5) / eta
    x = (stretched_x - 0.5) * size_km[1] / EARTH_RADIUS_KM
    y = (v - 0.5) * size_km[0] / EARTH_RADIUS_KM
    xx, yy = np.meshgrid(x, y)
    a = np.radians(rotation)
    gx, gy = np.cos(a) * xx - np.sin(a) * yy, np.sin(a) * xx + np.cos(a) * yy
    lon0, lat0 = np.radians(centre_lon), np.radians(centre_lat)
    centre = np.array([np.cos(lat0) * np.cos(lon0), np.cos(lat0) * np.sin(lon0), np.sin(lat0)])
    east = np.array([-np.sin(lon0), np.cos(lon0), 0.0])
    north = np.cross(centre, east)
    xyz = centre + gx[..., None] * east + gy[..., None] * north
    lon, lat = xyz_to_lonlat(xyz)
    return lon % 360.0, lat


def temperature(seed: int, lon: np.ndarray, lat: np.ndarray, levels: int, step: int) -> np.ndarray:
    """Packed Int16 temperature (levels, eta, xi) of one time step; land (a blob) is the fill value."""
    rng = np.random.default_rng([seed, 50, step])
    base = 22.0 - 0.45 * (np.abs(lat) - 30.0) + 0.5 * np.sin(np.radians(lon) * 7 + step / 5)
    eta, xi = lon.shape
    yy, xx = np.mgrid[0:eta, 0:xi]
    land = (xx - xi * 0.3) ** 2 / (xi * 0.08) ** 2 + (yy - eta * 0.55) ** 2 / (eta * 0.2) ** 2 < 1
    out = np.empty((levels, eta, xi), np.int16)
    for k in range(levels):
        temp = base - 1.5 * k + rng.normal(0, 0.02, size=base.shape)
        packed = np.rint((temp - TEMP_OFFSET) / TEMP_SCALE).clip(-32767, 32767).astype(np.int16)
        packed[land] = TEMP_FILL
        out[k] = packed
    return out


def write_month(path: Path, seed: int, year: int, month: int, eta: int, xi: int, levels: int,
                steps: int, rotation: float) -> None:
    import netCDF4

    lon, lat = roms_grid(eta, xi, rotation=rotation)
    first = (dt.datetime(year, month, 1) - dt.datetime(2000, 1, 1)).total_seconds()
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncatts({"title": "ROMS-like curvilinear ocean model output (chunkindex synthetic fixture)",
                      "Conventions": "CF-1.8", "type": "ROMS/TOMS history file"})
        nc.createDimension("ocean_time", None)
        nc.createDimension("s_rho", levels)
        nc.createDimension("eta_rho", eta)
        nc.createDimension("xi_rho", xi)
        time = nc.createVariable("ocean_time", "f8", ("ocean_time",))
        time.setncatts({"units": "seconds since 2000-01-01 00:00:00", "calendar": "standard",
                        "standard_name": "time"})
        s_rho = nc.createVariable("s_rho", "f8", ("s_rho",))
        s_rho.setncatts({"standard_name": "ocean_s_coordinate_g2", "positive": "up", "units": "1"})
        s_rho[:] = -1 + (np.arange(levels) + 0.5) / levels
        for name, values, std, units in (("lon_rho", lon, "longitude", "degrees_east"),
                                         ("lat_rho", lat, "latitude", "degrees_north")):
            var = nc.createVariable(name, "f8", ("eta_rho", "xi_rho"), zlib=True, complevel=4, shuffle=True)
            var.setncatts({"standard_name": std, "units": units, "long_name": f"{std} of RHO-points"})
            var[:] = values
        temp = nc.createVariable("temp", "i2", ("ocean_time", "s_rho", "eta_rho", "xi_rho"), zlib=True,
                                 complevel=1, shuffle=True, chunksizes=CHUNKS, fill_value=TEMP_FILL)
        temp.set_auto_maskandscale(False)
        temp.setncatts({"long_name": "potential temperature", "units": "Celsius",
                        "standard_name": "sea_water_potential_temperature",
                        "coordinates": "lon_rho lat_rho s_rho ocean_time",
                        "scale_factor": np.float64(TEMP_SCALE), "add_offset": np.float64(TEMP_OFFSET)})
        for step in range(steps):
            time[step] = first + step * 86400.0 * 10
            temp[step] = temperature(seed, lon, lat, levels, (year * 12 + month) * steps + step)


def generate(fixture_set: FixtureSet, folder: Path) -> None:
    """Write `count` monthly files from `start` (YYYY-MM)."""
    opts = fixture_set.options
    year, month = (int(p) for p in str(opts.get("start", "2022-01")).split("-")[:2])
    for _ in range(int(opts.get("count", 2))):
        write_month(folder / f"roms_his_{year:04d}_{month:02d}.nc", fixture_set.seed, year, month,
                    int(opts.get("eta", 200)), int(opts.get("xi", 300)), int(opts.get("levels", 2)),
                    int(opts.get("steps", 3)), float(opts.get("rotation", 30.0)))
        month += 1
        if month == 13:
            year, month = year + 1, 1
