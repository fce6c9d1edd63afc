"""Chunk footprints: one polygon per spatial chunk of each data array, with
the number of references and bytes behind it, as GeoParquet and GeoPackage
(written with GDAL's OGR drivers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chunkindex.atomic import commit, staging_path
from chunkindex.model import ArraySpec


def _coordinate_values(arrays: list[ArraySpec]) -> dict[str, np.ndarray]:
    return {a.name: np.frombuffer(a.inline, dtype="<f8") for a in arrays if a.inline is not None}


def _edges(centres: np.ndarray) -> np.ndarray:
    step = centres[1] - centres[0] if centres.size > 1 else 1.0
    return np.concatenate([centres - step / 2, centres[-1:] + step / 2])


def _crs_of(array: ArraySpec) -> str | None:
    url = array.attrs.get("_CRS", {}).get("url")
    return "EPSG:" + url.rsplit("/", 1)[1] if url else None


def write_footprints(arrays: list[ArraySpec], parquet_path: str | Path, gpkg_path: str | Path) -> int:
    """Write footprints of every data array with y/x coordinates; returns the feature count."""
    from osgeo import gdal, ogr, osr

    gdal.UseExceptions()
    coords = _coordinate_values(arrays)
    outputs = [(Path(parquet_path), "Parquet"), (Path(gpkg_path), "GPKG")]
    staging = [(staging_path(p), driver) for p, driver in outputs]
    datasets = []
    for path, driver in staging:
        if path.exists():
            path.unlink()
        datasets.append(gdal.GetDriverByName(driver).CreateVector(str(path)) if hasattr(gdal.Driver, "CreateVector")
                        else ogr.GetDriverByName(driver).CreateDataSource(str(path)))
    count = 0
    try:
        layers = []
        srs = None
        data_arrays = [a for a in arrays if a.inline is None and "chunkindex" in a.attrs
                       and "variant_of" not in a.attrs["chunkindex"]]
        crs = next((c for c in map(_crs_of, data_arrays) if c), None)
        if crs:
            srs = osr.SpatialReference()
            srs.SetFromUserInput(crs)
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        for ds in datasets:
            layer = ds.CreateLayer("chunk_footprints", srs, ogr.wkbPolygon)
            for name, kind in (("array", ogr.OFTString), ("y_chunk", ogr.OFTInteger), ("x_chunk", ogr.OFTInteger),
                               ("refs", ogr.OFTInteger64), ("bytes", ogr.OFTInteger64)):
                layer.CreateField(ogr.FieldDefn(name, kind))
            layers.append(layer)
        for array in data_arrays:
            if array.spatial_dims is None:
                continue
            y_dim, x_dim = array.spatial_dims
            if y_dim not in coords or x_dim not in coords:
                continue
            y_axis, x_axis = array.dims.index(y_dim), array.dims.index(x_dim)
            y_edges, x_edges = _edges(coords[y_dim]), _edges(coords[x_dim])
            grid = array.chunk_grid
            present = (array.url_index >= 0).reshape(grid)
            sizes = np.where(array.url_index >= 0, array.sizes, 0).reshape(grid)
            other = tuple(i for i in range(len(grid)) if i not in (y_axis, x_axis))
            refs = present.sum(axis=other) if other else present.astype(np.int64)
            nbytes = sizes.sum(axis=other) if other else sizes
            if y_axis > x_axis:
                refs, nbytes = refs.T, nbytes.T
            cy, cx = array.chunks[y_axis], array.chunks[x_axis]
            for j in range(grid[y_axis]):
                y0, y1 = y_edges[j * cy], y_edges[min((j + 1) * cy, y_edges.size - 1)]
                for i in range(grid[x_axis]):
                    x0, x1 = x_edges[i * cx], x_edges[min((i + 1) * cx, x_edges.size - 1)]
                    wkt = f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"
                    for layer in layers:
                        feature = ogr.Feature(layer.GetLayerDefn())
                        feature.SetField("array", array.name)
                        feature.SetField("y_chunk", j)
                        feature.SetField("x_chunk", i)
                        feature.SetField("refs", int(refs[j, i]))
                        feature.SetField("bytes", int(nbytes[j, i]))
                        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
                        layer.CreateFeature(feature)
                    count += 1
        for ds in datasets:
            ds.Close()
        datasets = []
        for (tmp, _), (final, _) in zip(staging, outputs):
            commit(tmp, final)
    finally:
        for ds in datasets:
            ds.Close()
        for tmp, _ in staging:
            if tmp.exists():
                tmp.unlink()
    return count

