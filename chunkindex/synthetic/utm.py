"""A two-zone UTM COG set, Sentinel-2-like: tiles in UTM zones 55S and 56S
(EPSG:32755, EPSG:32756) on either side of the 150 E zone boundary, each
1098 x 1098 pixels of 100 m (a Sentinel-2 tile at 1/10 of 10 m resolution),
UInt16 reflectance, 256 x 256 DEFLATE tiles with overviews, two dates.

Files `<date>/T<zone><tile>_<date>_B04.tif`; each keeps its own CRS, so one
index holds chunks in two CRSs (footprints bring them to WGS84).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chunkindex.synthetic.manifest import FixtureSet

SIZE = 1098
PIXEL = 100.0
# (tile name, EPSG, upper-left easting, northing): two tiles per zone, the
# zone-56 tiles overlapping the zone-55 ones in longitude near 150 E.
TILES = (
    ("55HFA", 32755, 699960.0, 6300040.0),
    ("55HGA", 32755, 799980.0, 6300040.0),
    ("56HKF", 32756, 199980.0, 6300040.0),
    ("56HLF", 32756, 300000.0, 6300040.0),
)


def reflectance(seed: int, tile: int, date: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 60, tile, date])
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    base = 1500 + 600 * np.sin(x / 97.0 + tile) * np.cos(y / 131.0 - date)
    return (base + rng.integers(0, 2, size=base.shape)).astype(np.uint16)


def write_tile(path: Path, seed: int, tile: int, date: int) -> None:
    from osgeo import gdal, osr

    gdal.UseExceptions()
    _, epsg, x0, y0 = TILES[tile]
    mem = gdal.GetDriverByName("MEM").Create("", SIZE, SIZE, 1, gdal.GDT_UInt16)
    mem.SetGeoTransform((x0, PIXEL, 0.0, y0, 0.0, -PIXEL))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    mem.SetSpatialRef(srs)
    band = mem.GetRasterBand(1)
    band.SetNoDataValue(0)
    band.WriteArray(reflectance(seed, tile, date))
    path.parent.mkdir(parents=True, exist_ok=True)
    gdal.GetDriverByName("COG").CreateCopy(
        str(path), mem, options=["BLOCKSIZE=256", "COMPRESS=DEFLATE", "OVERVIEWS=AUTO", "NUM_THREADS=1"])


def generate(fixture_set: FixtureSet, folder: Path) -> None:
    """Write every tile for each of `dates` (default two)."""
    dates = [str(d) for d in fixture_set.options.get("dates", ["20240105", "20240115"])]
    for d, date in enumerate(dates):
        for t, (name, _, _, _) in enumerate(TILES):
            write_tile(folder / date / f"T{name}_{date}_B04.tif", fixture_set.seed, t, d)
