"""Checks of footprints against their grid: containment of every pixel
centre and corner, and area excess over the chunk's true area."""

from __future__ import annotations

import numpy as np

from chunkindex.geo.footprints import Footprints, Grid
from chunkindex.geo.grids import (
    WGS84,
    AffineGrid,
    GCPGrid,
    GeolocatedGrid,
    TiePointGrid,
    lonlat_to_xyz,
)


def pixel_points(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Longitude/latitude of every pixel's four corners and centre, shape (rows, cols, 5)."""
    if isinstance(grid, TiePointGrid):
        grid = grid.expand()
    if isinstance(grid, GeolocatedGrid):
        lon, lat = grid.pixel_corners()
        return (np.concatenate([lon, grid.lon[..., None]], axis=2),
                np.concatenate([lat, grid.lat[..., None]], axis=2))
    from pyproj import Transformer

    r, c = np.mgrid[0:grid.height, 0:grid.width].astype(np.float64)
    cols = np.stack([c, c + 1, c + 1, c, c + 0.5], axis=2)
    rows = np.stack([r, r, r + 1, r + 1, r + 0.5], axis=2)
    x, y = grid.pixel_to_crs(cols, rows)
    lon, lat = Transformer.from_crs(grid.crs, WGS84, always_xy=True).transform(x, y)
    return ((lon + 180.0) % 360.0 - 180.0, np.clip(lat, -90.0, 90.0))


def _shape(grid: Grid) -> tuple[int, int]:
    return (grid.height, grid.width) if isinstance(grid, AffineGrid | GCPGrid) else tuple(grid.shape)


def chunk_of_pixels(grid: Grid, chunk_shape: tuple[int, int]) -> np.ndarray:
    """Chunk number (C order) of every pixel, shape (rows, cols)."""
    rows, cols = _shape(grid)
    cy, cx = chunk_shape
    r, c = np.mgrid[0:rows, 0:cols]
    return (r // cy) * (-(-cols // cx)) + c // cx


def containment_misses(footprints: Footprints, grid: Grid, chunk_shape: tuple[int, int]) -> np.ndarray:
    """Chunk numbers of pixel corners/centres outside their chunk's footprint
    (one entry per point outside; empty when every point is covered).

    Points are in longitude -180..180; a footprint split at the antimeridian
    holds each point in one of its parts.
    """
    import shapely

    geoms = footprints.geometries()
    shapely.prepare(geoms)
    lon, lat = pixel_points(grid)
    lon = (lon + 180.0) % 360.0 - 180.0
    ids = np.repeat(chunk_of_pixels(grid, chunk_shape)[..., None], lon.shape[2], axis=2).ravel()
    inside = shapely.intersects_xy(geoms[ids], lon.ravel(), lat.ravel())
    # A point on the antimeridian may be stored as -180 or 180.
    edge = ~inside & (np.abs(np.abs(lon.ravel()) - 180.0) < 1e-9)
    inside[edge] = shapely.intersects_xy(geoms[ids[edge]], -lon.ravel()[edge], lat.ravel()[edge])
    return ids[~inside]


def _laea(lon: np.ndarray, lat: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lambert azimuthal equal-area coordinates (unit sphere) about per-point centres."""
    p = lonlat_to_xyz(lon, lat)
    east = np.cross(np.array([0.0, 0.0, 1.0]), centre)
    polar = np.linalg.norm(east, axis=-1) < 1e-12
    east[polar] = np.cross(np.array([0.0, 1.0, 0.0]), centre[polar])
    east /= np.linalg.norm(east, axis=-1, keepdims=True)
    north = np.cross(centre, east)
    k = np.sqrt(2.0 / np.maximum(1.0 + (p * centre).sum(-1), 1e-12))
    return k * (p * east).sum(-1), k * (p * north).sum(-1)


def area_excess(footprints: Footprints, grid: Grid, chunk_shape: tuple[int, int]) -> np.ndarray:
    """Per chunk, footprint area / true area - 1, areas on the sphere (equal-area
    projection about the chunk's centre). The true area is the union of the
    chunk's pixel quadrilaterals (overlapping bowtie scans counted once)."""
    import shapely

    lon, lat = pixel_points(grid)
    ids = chunk_of_pixels(grid, chunk_shape)
    n = len(footprints)
    centre = np.zeros((n, 3))
    np.add.at(centre, ids.ravel(), lonlat_to_xyz(lon[..., 4], lat[..., 4]).reshape(-1, 3))
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    # Stored edges are straight in lon/lat: densify them there before projecting.
    geoms = footprints.geometries()
    span = footprints.bounds[:, 2:] - footprints.bounds[:, :2]
    geoms = shapely.segmentize(geoms, np.maximum(span.max(axis=1) / 200, 1e-6))
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    x, y = _laea(coords[:, 0], coords[:, 1], centre[index])
    fp_area = shapely.area(shapely.set_coordinates(geoms.copy(), np.stack([x, y], axis=1)))
    cx, cy = _laea(lon[..., :4], lat[..., :4], centre[ids][..., None, :].repeat(4, axis=-2))
    quads = shapely.polygons(np.stack([cx, cy], axis=-1).reshape(-1, 4, 2))
    scanned = isinstance(grid, GeolocatedGrid | TiePointGrid) and grid.scan_lines
    if scanned:  # overlapping scans: the union of each scan's (non-overlapping) quads, per chunk
        rows = np.arange(ids.shape[0])[:, None] // grid.scan_lines
        key = (ids * (ids.shape[0] // grid.scan_lines + 1) + rows).ravel()
        order = np.argsort(key, kind="stable")
        _, starts = np.unique(key[order], return_index=True)
        pieces = [shapely.coverage_union_all(g) for g in np.split(quads[order], starts[1:])]
        owner = ids.ravel()[order][starts]
        true_area = np.array([shapely.area(shapely.union_all(pieces_i)) for pieces_i in
                              np.split(np.array(pieces, dtype=object), np.flatnonzero(np.diff(owner)) + 1)])
    else:  # quadrilaterals tile the chunk: their areas add up
        true_area = np.bincount(ids.ravel(), weights=shapely.area(quads), minlength=n)
    return fp_area / true_area - 1.0
