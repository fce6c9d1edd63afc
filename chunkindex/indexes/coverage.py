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
import pyarrow as pa
import pyarrow.compute as pc

from chunkindex.atomic import commit, staging_path
from chunkindex.geo import AffineGrid, grid_footprints


def _gdal_grid(path: str) -> AffineGrid:
    """The grid of a raster as GDAL reads it (for files whose header the
    indexer did not place: a user-defined CRS, say)."""
    from osgeo import gdal

    ds = gdal.Open(path)
    if ds is None:
        raise ValueError(f"{path}: GDAL cannot open it")
    srs = ds.GetSpatialRef()
    gt = ds.GetGeoTransform(can_return_null=True)
    if srs is None or gt is None:
        raise ValueError(f"{path}: no geotransform or CRS (GCP-only files cannot be GTI tiles)")
    return AffineGrid(tuple(gt), ds.RasterXSize, ds.RasterYSize, srs.ExportToWkt(["FORMAT=WKT2_2019"]))


def _file_footprint(grid: AffineGrid) -> tuple[bytes, float]:
    """WKB footprint (WGS84) of a whole georeferenced raster, and its pixel
    size in degrees at its centre."""
    prints = grid_footprints(grid, (grid.height, grid.width))
    b = prints.bounds[0]
    degrees_per_pixel = min((b[2] - b[0]) / grid.width, (b[3] - b[1]) / grid.height)
    return prints.wkb[0].as_py(), degrees_per_pixel


def header_grids(headers: pa.Table, file_ids: list[int]) -> list[AffineGrid | None]:
    """Each file's full-resolution grid from the TIFF header rows the
    headers step read (no file is opened again), or None where the header
    names no EPSG CRS or no geotransform (GDAL then reads that file)."""
    first = headers.filter(pc.equal(headers["ifd"], 0)).select(["file_id", "geotransform", "width", "height", "crs"])
    by_file = {row["file_id"]: row for row in first.to_pylist()}
    grids: list[AffineGrid | None] = []
    for file_id in file_ids:
        row = by_file.get(file_id)
        ok = row is not None and row["geotransform"] is not None and row["crs"] is not None
        grids.append(AffineGrid(tuple(row["geotransform"]), row["width"], row["height"], row["crs"]) if ok else None)
    return grids


def write_gti(files: list[str], times: list[dt.datetime | None], target: str | Path,
              grids: list[AffineGrid | None] | None = None) -> int:
    """Write the GTI GeoPackage of `files` (GDAL paths) at `times`; returns the layer count.

    Args:
        files: the tiles, as GDAL opens them (`/vsis3/...`, local paths).
        times: each file's time step (None for an archive without time).
        target: the `.gti.gpkg` to write (atomically).
        grids: each file's grid when known from its header (`header_grids`);
            files without one are opened through GDAL.

    Returns:
        The number of layers (time steps) written.
    """
    from osgeo import gdal, ogr, osr

    gdal.UseExceptions()
    if not files:
        raise ValueError("no files to index")
    target = Path(target)
    staging = staging_path(target)
    staging = staging.with_name(staging.name + ".gpkg")
    known = grids if grids is not None else [None] * len(files)
    footprints, resolution = zip(*(_file_footprint(grid if grid is not None else _gdal_grid(path))
                                   for path, grid in zip(files, known)))
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
