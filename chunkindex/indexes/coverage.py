"""Coverage of a raster archive: one feature per file (granule) with its
WGS84 footprint and time, as a GDAL GTI (GDAL Tile Index) GeoPackage that
stock GDAL opens as a mosaic: `gdalinfo <id>.gti.gpkg`.

One layer per time step (`t_<time>`, in time order), the latest first, so
that `gdalinfo <id>.gti.gpkg` mosaics the latest step and
`gdalinfo GTI:<id>.gti.gpkg:t_20240105` (or `-oo LAYER=...`) any other.
Files keep their own CRS (tiles in several UTM zones are warped by GTI);
the layers' SRS is WGS84 and the resolution (layer metadata `RESX`/`RESY`)
the finest of the files, in degrees at their centres.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from chunkindex.atomic import commit, staging_path
from chunkindex.geo import AffineGrid, grid_footprints


def _file_footprint(path: str) -> tuple[bytes, float]:
    """WKB footprint (WGS84) of a whole georeferenced raster, and its pixel
    size in degrees at its centre."""
    from osgeo import gdal

    ds = gdal.Open(path)
    if ds is None:
        raise ValueError(f"{path}: GDAL cannot open it")
    srs = ds.GetSpatialRef()
    gt = ds.GetGeoTransform(can_return_null=True)
    if srs is None or gt is None:
        raise ValueError(f"{path}: no geotransform or CRS (GCP-only files cannot be GTI tiles)")
    srs.SetAxisMappingStrategy(0)  # OAMS_TRADITIONAL_GIS_ORDER
    grid = AffineGrid(tuple(gt), ds.RasterXSize, ds.RasterYSize, srs.ExportToWkt(["FORMAT=WKT2_2019"]))
    prints = grid_footprints(grid, (ds.RasterYSize, ds.RasterXSize))
    b = prints.bounds[0]
    degrees_per_pixel = min((b[2] - b[0]) / ds.RasterXSize, (b[3] - b[1]) / ds.RasterYSize)
    return prints.wkb[0].as_py(), degrees_per_pixel


def write_gti(files: list[str], times: list[dt.datetime | None], target: str | Path) -> int:
    """Write the GTI GeoPackage of `files` (GDAL paths) at `times`; returns the layer count."""
    from osgeo import gdal, ogr, osr

    gdal.UseExceptions()
    if not files:
        raise ValueError("no files to index")
    target = Path(target)
    staging = staging_path(target)
    staging = staging.with_name(staging.name + ".gpkg")
    footprints, resolution = zip(*(_file_footprint(f) for f in files))
    res = float(np.min(resolution))
    steps = sorted({t for t in times if t is not None}, reverse=True) or [None]
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ds = None
    try:
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(staging))
        names = []
        for step in steps:
            name = "coverage" if step is None else f"t_{step:%Y%m%dT%H%M%S}".removesuffix("T000000")
            names.append(name)
            layer = ds.CreateLayer(name, srs, ogr.wkbUnknown, ["SPATIAL_INDEX=YES"])
            layer.CreateField(ogr.FieldDefn("location", ogr.OFTString))
            layer.CreateField(ogr.FieldDefn("time", ogr.OFTDateTime))
            for key, value in (("RESX", res), ("RESY", res), ("SRS", "EPSG:4326"), ("LOCATION_FIELD", "location")):
                layer.SetMetadataItem(key, str(value))
            for path, when, wkb in zip(files, times, footprints):
                if when != step:
                    continue
                feature = ogr.Feature(layer.GetLayerDefn())
                feature.SetField("location", path)
                if when is not None:
                    feature.SetField("time", when.year, when.month, when.day, when.hour, when.minute,
                                     when.second, 0)
                feature.SetGeometry(ogr.CreateGeometryFromWkb(wkb))
                layer.CreateFeature(feature)
        ds.SetMetadataItem("TILE_INDEX_LAYER", names[0])  # what `gdalinfo <file>` mosaics: the latest step
        ds.Close()
        ds = None
        commit(staging, target)
    finally:
        ds = None
        staging.unlink(missing_ok=True)
    return len(steps)
