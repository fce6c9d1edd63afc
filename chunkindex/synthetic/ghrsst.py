"""GHRSST MUR v2-like daily Cloud-Optimised GeoTIFFs.

Faithful to the archive on Source Cooperative: the same file names, a global
0.01 degree grid (36000 x 17999 at scale 1), single-band Int16 `analysed_sst`
(scale 0.001, offset 25, nodata -32768) and Int8 `mask`, 512 x 512 tiles,
internal overviews 2/4/8/16/32, EPSG:4326 with geotransform
(-179.995, 0.01, 0, 89.995, 0, -0.01). Values are a smooth latitude-driven
field with seeded perturbations, noise, land, ice and a drift from day to day,
so tiles differ from each other and from file to file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from chunkindex.synthetic.manifest import FixtureSet

FULL_WIDTH, FULL_HEIGHT = 36000, 17999
FULL_RESOLUTION = 0.01
ORIGIN_X, ORIGIN_Y = -179.995, 89.995
SST_SCALE, SST_OFFSET, SST_NODATA = 0.001, 25.0, -32768
MASK_WATER, MASK_LAND, MASK_ICE = 1, 2, 9
FILE_NAME = "{date:%Y%m%d}090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1_{variable}.tif"
RELATIVE_PATH = "{date:%Y}/{date:%m}/{date:%d}/" + FILE_NAME


def grid_shape(scale: float) -> tuple[int, int]:
    """(height, width) of the grid at `scale` (1.0 = the real 17999 x 36000)."""
    return max(1, round(FULL_HEIGHT * scale)), max(1, round(FULL_WIDTH * scale))


def geotransform(scale: float) -> tuple[float, float, float, float, float, float]:
    resolution = FULL_RESOLUTION / scale
    return (ORIGIN_X, resolution, 0.0, ORIGIN_Y, 0.0, -resolution)


def _smooth_field(rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray, waves: int) -> np.ndarray:
    """Sum of random low-frequency waves on the sphere (broadcast lat x lon)."""
    lat_r, lon_r = np.deg2rad(lat)[:, None], np.deg2rad(lon)[None, :]
    field = np.zeros((lat.size, lon.size), dtype=np.float64)
    for _ in range(waves):
        k_lon = rng.integers(1, 7)
        k_lat = rng.integers(1, 5)
        phase_lon, phase_lat = rng.uniform(0, 2 * np.pi, size=2)
        amplitude = rng.uniform(0.3, 1.0)
        field += amplitude * np.cos(k_lon * lon_r + phase_lon) * np.cos(k_lat * lat_r + phase_lat)
    return field / waves


def day_fields(seed: int, scale: float, day_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The (analysed_sst Int16, mask Int8) grids of one day."""
    height, width = grid_shape(scale)
    gt = geotransform(scale)
    lon = gt[0] + (np.arange(width) + 0.5) * gt[1]
    lat = gt[3] + (np.arange(height) + 0.5) * gt[5]

    land_rng = np.random.default_rng([seed, 0])  # land does not move from day to day
    land = _smooth_field(land_rng, lat, lon, waves=12) > 0.18
    land |= lat[:, None] < -70.0  # an Antarctica

    day_rng = np.random.default_rng([seed, 1, day_index])
    base = 29.0 * np.cos(np.deg2rad(lat))[:, None] ** 1.5 - 1.5
    drift = 2.5 * _smooth_field(np.random.default_rng([seed, 2]), lat, lon, waves=6)
    seasonal = 0.8 * np.sin(2 * np.pi * day_index / 365.25) * np.sin(np.deg2rad(lat))[:, None]
    sst = base + drift + seasonal + day_rng.normal(0.0, 0.08, size=(height, width))
    sst = np.maximum(sst, -1.8)
    ice = (~land) & (np.abs(lat)[:, None] > 66.0) & (sst < 0.5)

    packed = np.rint((sst - SST_OFFSET) / SST_SCALE).clip(-32767, 32767).astype(np.int16)
    packed[land] = SST_NODATA
    mask = np.full((height, width), MASK_WATER, dtype=np.int8)
    mask[land] = MASK_LAND
    mask[ice] = MASK_ICE
    return packed, mask


def write_cog(
    path: Path,
    data: np.ndarray,
    scale: float,
    compression: str,
    predictor: int,
    *,
    nodata: float | None,
    band_scale: float | None = None,
    band_offset: float | None = None,
    units: str | None = None,
    description: str | None = None,
    resampling: str = "NEAREST",
) -> None:
    """Write one single-band COG the way GDAL's COG driver lays it out."""
    from osgeo import gdal, osr

    gdal.UseExceptions()
    height, width = data.shape
    gdal_type = {np.dtype("int16"): gdal.GDT_Int16, np.dtype("int8"): gdal.GDT_Int8}[data.dtype]
    mem = gdal.GetDriverByName("MEM").Create("", width, height, 1, gdal_type)
    mem.SetGeoTransform(geotransform(scale))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    mem.SetSpatialRef(srs)
    band = mem.GetRasterBand(1)
    band.WriteArray(data)
    if nodata is not None:
        band.SetNoDataValue(nodata)
    if band_scale is not None:
        band.SetScale(band_scale)
    if band_offset is not None:
        band.SetOffset(band_offset)
    if units:
        band.SetUnitType(units)
    if description:
        band.SetDescription(description)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = [
        "BLOCKSIZE=512",
        f"COMPRESS={compression}",
        f"PREDICTOR={predictor}",
        "OVERVIEW_COUNT=5",
        f"OVERVIEW_RESAMPLING={resampling}",
        "NUM_THREADS=1",
    ]
    out = gdal.Translate(str(path), mem, format="COG", creationOptions=options)
    out.Close()


def generate(fixture_set: FixtureSet, folder: Path) -> None:
    """Write `count` daily files per variable from `start` into `folder`."""
    opts = fixture_set.options
    scale = float(opts.get("scale", 0.05))
    start = dt.date.fromisoformat(str(opts.get("start", "2024-01-01")))
    count = int(opts.get("count", 3))
    variables = list(opts.get("variables", ["analysed_sst", "mask"]))
    compression = str(opts.get("compression", "ZSTD"))
    predictor = int(opts.get("predictor", 2))
    for day_index in range(count):
        date = start + dt.timedelta(days=day_index)
        sst, mask = day_fields(fixture_set.seed, scale, (date - dt.date(2002, 6, 1)).days)
        for variable in variables:
            path = folder / RELATIVE_PATH.format(date=date, variable=variable)
            if variable == "analysed_sst":
                write_cog(path, sst, scale, compression, predictor, nodata=SST_NODATA,
                          band_scale=SST_SCALE, band_offset=SST_OFFSET, units="celsius",
                          description="analysed_sst", resampling="AVERAGE")
            elif variable == "mask":
                write_cog(path, mask, scale, compression, predictor, nodata=None,
                          description="mask", resampling="NEAREST")
            else:
                raise ValueError(f"fixture set {fixture_set.name!r}: unknown variable {variable!r}")
