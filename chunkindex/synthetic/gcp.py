"""A GCP-georeferenced TIFF (no geotransform): an 800 x 600 scene, tiled
256 x 256, placed by a 5 x 5 grid of ground control points in WGS84 that
follow a gently curved, rotated mapping (as a raw airborne or satellite
scene's tie points do). GDAL's GCP polynomial transform (order 3 for 25
GCPs) and chunkindex's `GCPGrid` fit the same polynomial.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chunkindex.synthetic.manifest import FixtureSet

WIDTH, HEIGHT = 800, 600


def gcp_positions() -> np.ndarray:
    """(col, row, lon, lat) of the 25 GCPs."""
    cols, rows = np.meshgrid(np.linspace(0, WIDTH, 5), np.linspace(0, HEIGHT, 5))
    u, v = cols / WIDTH, rows / HEIGHT
    a = np.radians(12.0)
    east, north = u * 1.6 + 0.08 * v**2, -v * 1.2 + 0.05 * u * v
    lon = 134.0 + np.cos(a) * east - np.sin(a) * north
    lat = -20.0 + np.sin(a) * east + np.cos(a) * north
    return np.stack([cols.ravel(), rows.ravel(), lon.ravel(), lat.ravel()], axis=1)


def generate(fixture_set: FixtureSet, folder: Path) -> None:
    from osgeo import gdal, osr

    gdal.UseExceptions()
    rng = np.random.default_rng([fixture_set.seed, 70])
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    values = (120 + 80 * np.sin(x / 40.0) * np.cos(y / 55.0) + rng.integers(0, 6, (HEIGHT, WIDTH))).astype(np.uint8)
    ds = gdal.GetDriverByName("GTiff").Create(
        str(folder / "scene_gcp.tif"), WIDTH, HEIGHT, 1, gdal.GDT_Byte,
        ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE"])
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    gcps = [gdal.GCP(float(lon), float(lat), 0.0, float(col), float(row))
            for col, row, lon, lat in gcp_positions()]
    ds.SetGCPs(gcps, srs)
    ds.GetRasterBand(1).WriteArray(values)
    ds.Close()
