"""Per-chunk footprint polygons in WGS84 longitude/latitude, as WKB columns.

One footprint per spatial chunk (rows of chunks in C order). How each grid
kind is handled:

- **Affine grid in WGS84 longitude/latitude** (north-up, south-up or
  rotated): the chunk's four corners, an exact quadrilateral (zero excess).
- **Any other mapped grid** (affine in a projected or other geographic CRS,
  GCP polynomial): each chunk edge is sampled at up to `line_points` points,
  transformed to WGS84 with pyproj, and enclosed as below.
- **Tie-point grids** (swath and curvilinear geolocation on tie points):
  exact control points, no sampling: the corner surface is bilinear between
  tie points, so a chunk lies in the hull of its edge values at the tie
  rows/columns crossing it (`_tie_points`).
- **Per-pixel geolocated grids** (curvilinear, swath): the chunk's pixel
  corners on its edges, plus, for scanned swaths, the first and last corner
  rows of every scan inside the chunk (bowtie overlap: a scan's edges may lie
  outside the chunk's outer rows), sampled at up to `line_points` points per
  line.

Enclosing: the points are projected onto the plane tangent at the chunk's
centre (gnomonic: great circles are straight lines, so the enclosure is the
same anywhere on the globe, across the antimeridian and at the poles), and
the chunk's polygon is its boundary ring pushed outward (chunks within one
scan) or a `k`-DOP there: the intersection of the half-planes bounding the
points in `k` directions (evenly spaced, with the four whose directions are
closest to the chunk's own edge normals replaced by those normals, so
quadrilateral chunks stay quadrilaterals). Sampled points add a margin for
what sampling can miss (the second difference of the samples along each
line, times 2). Stored edges are straight in longitude/latitude, not great
circles: the polygon is pushed out by `tolerance` x its width and its edges
split into pieces whose straight lon/lat chord provably stays within that
push (a curvature bound from the geodesic equations, `_split_counts`), so no
iterative refinement and no estimate: the chunk stays inside.

Then: a polygon that contains a pole is closed through the pole along
longitude -180/180 (a cap); one that crosses the antimeridian is split into
a MultiPolygon of its parts in [-180, 180]; everything else is a simple
polygon, written straight to WKB with numpy. Polygons are counter-clockwise.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from chunkindex.geo.grids import (
    WGS84,
    AffineGrid,
    GCPGrid,
    GeolocatedGrid,
    TiePointGrid,
    lonlat_to_xyz,
    xyz_to_lonlat,
)

Grid = AffineGrid | GCPGrid | GeolocatedGrid | TiePointGrid

EPS_RAD = 1e-9  # ~6 mm: covers round-off in the lon/lat <-> 3-D <-> plane round trips
BATCH = 2048  # chunks enclosed at once (memory: BATCH x points doubles)
SUPPORT_STEP = 256  # chunks per k-DOP support product (k x points doubles each: in cache)
LARGE_COS = math.cos(math.radians(75))  # a chunk wider than this from its centre leaves the tangent plane

# Default edge tolerances (see `grid_footprints`): area excess about twice these.
TOLERANCE = 2e-4
SWATH_TOLERANCE = 1e-2

BBOX_TYPE = pa.struct([("xmin", pa.float64()), ("ymin", pa.float64()),
                       ("xmax", pa.float64()), ("ymax", pa.float64())])


@dataclass
class Footprints:
    """Footprints of the spatial chunks of one grid, in C order of the chunk grid.

    Attributes:
        chunk_row: chunk index along the grid's rows (y), int32.
        chunk_col: chunk index along the grid's columns (x), int32.
        wkb: WKB Polygon/MultiPolygon in WGS84 longitude/latitude per chunk.
        bounds: (n, 4) xmin, ymin, xmax, ymax of each geometry (longitude/latitude).
        native_bounds: (n, 4) bounds in the grid's own CRS (NaN for geolocated grids,
            whose own coordinates are longitude/latitude: see `bounds`).
        native_crs: the grid's CRS (WGS84 for geolocated grids).
        kind: the grid kind: affine-wgs84, mapped, curvilinear or swath.
        granule: for a stack of geolocated granules, each chunk's granule (else None).
    """

    chunk_row: np.ndarray
    chunk_col: np.ndarray
    wkb: pa.Array
    bounds: np.ndarray
    native_bounds: np.ndarray
    native_crs: str
    kind: str
    granule: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.chunk_row)

    def geometries(self) -> np.ndarray:
        """The footprints as a shapely 2 geometry array."""
        import shapely

        return shapely.from_wkb(np.asarray(self.wkb.to_numpy(zero_copy_only=False), dtype=object))

    def to_table(self) -> pa.Table:
        """Arrow table: chunk_row, chunk_col, geometry (WKB), bbox (struct), native_xmin..native_ymax."""
        granule = {} if self.granule is None else {"granule": pa.array(self.granule, pa.int32())}
        return pa.table({
            **granule,
            "chunk_row": pa.array(self.chunk_row, pa.int32()),
            "chunk_col": pa.array(self.chunk_col, pa.int32()),
            "geometry": self.wkb,
            "bbox": bbox_column(self.bounds),
            **{f"native_{k}": pa.array(self.native_bounds[:, i]) for i, k in enumerate(("xmin", "ymin", "xmax", "ymax"))},
        })


def bbox_column(bounds: np.ndarray) -> pa.StructArray:
    """The GeoParquet 1.1 `bbox` covering column of (n, 4) bounds."""
    return pa.StructArray.from_arrays([pa.array(bounds[:, i]) for i in range(4)], fields=list(BBOX_TYPE))


def grid_footprints(grid: Grid, chunk_shape: tuple[int, int], *, k: int = 16, line_points: int = 9,
                    max_segment_deg: float = 2.0, tolerance: float | None = None) -> Footprints:
    """Footprints of every chunk of `grid` cut into chunks of `chunk_shape` (rows, cols).

    Args:
        grid: an `AffineGrid`, `GCPGrid`, `GeolocatedGrid` or `TiePointGrid`.
        chunk_shape: chunk size in pixels along rows and columns.
        k: directions of the enclosing polygon (>= 8) for non-exact footprints.
        line_points: most points sampled along each chunk edge or scan line.
        max_segment_deg: longest straight edge stored (great circles are densified).
        tolerance: how far a stored (straight lon/lat) edge may stray from the
            great circle it stands for, relative to the chunk's width (sets the
            outward push, so about half the area excess it adds); default
            `SWATH_TOLERANCE` for scanned swaths, `TOLERANCE` otherwise.

    Returns:
        The footprints, one per chunk, in C order of the chunk grid.

    Example:
        >>> g = AffineGrid((-180.0, 0.01, 0.0, 90.0, 0.0, -0.01), 36000, 18000)
        >>> f = grid_footprints(g, (512, 512))
        >>> len(f), f.bounds[0].tolist()
        (2556, [-180.0, 84.88, -174.88, 90.0])
    """
    cy, cx = (int(v) for v in chunk_shape)
    if cy < 1 or cx < 1:
        raise ValueError(f"chunk shape {chunk_shape} must be positive")
    if k < 8:
        raise ValueError(f"k={k}: at least 8 directions are needed")
    if isinstance(grid, GeolocatedGrid | TiePointGrid):
        tol = tolerance or (SWATH_TOLERANCE if grid.scan_lines else TOLERANCE)
        if isinstance(grid, TiePointGrid):
            return _tie_points(grid, cy, cx, k, max_segment_deg, tol)
        return _geolocated(grid, cy, cx, k, line_points, max_segment_deg, tol)
    if isinstance(grid, AffineGrid) and _is_wgs84(grid.crs):
        return _affine_wgs84(grid, cy, cx)
    if isinstance(grid, AffineGrid | GCPGrid):
        return _mapped(grid, cy, cx, k, line_points, max_segment_deg, tolerance or TOLERANCE)
    raise TypeError(f"not a grid: {type(grid).__name__}")


def _is_wgs84(crs: str) -> bool:
    from pyproj import CRS

    parsed = CRS.from_user_input(crs)
    return parsed.is_geographic and parsed.equals(CRS.from_epsg(4326), ignore_axis_order=True)


def _chunk_ranges(height: int, width: int, cy: int, cx: int) -> tuple[np.ndarray, ...]:
    ny, nx = -(-height // cy), -(-width // cx)
    row, col = np.divmod(np.arange(ny * nx, dtype=np.int64), nx)
    r0, c0 = row * cy, col * cx
    return row.astype(np.int32), col.astype(np.int32), r0, np.minimum(r0 + cy, height), c0, np.minimum(c0 + cx, width)


# --- affine grids in WGS84: exact quadrilaterals --------------------------------------------

def _affine_wgs84(grid: AffineGrid, cy: int, cx: int) -> Footprints:
    row, col, r0, r1, c0, c1 = _chunk_ranges(grid.height, grid.width, cy, cx)
    cols = np.stack([c0, c0, c1, c1], axis=1).astype(np.float64)
    rows = np.stack([r0, r1, r1, r0], axis=1).astype(np.float64)
    lon, lat = grid.pixel_to_crs(cols, rows)
    native = np.stack([_row_min(lon), _row_min(lat), _row_max(lon), _row_max(lat)], axis=1)
    lat = np.clip(lat, -90.0, 90.0)
    if grid.geotransform[2] or grid.geotransform[4]:
        # Rotated: edges are not axis-aligned, so round-off could put an edge
        # pixel's corner a hair outside; widen by a relative 1e-9.
        mx, my = lon.mean(axis=1, keepdims=True), lat.mean(axis=1, keepdims=True)
        lon, lat = mx + (lon - mx) * (1 + 1e-9), np.clip(my + (lat - my) * (1 + 1e-9), -90.0, 90.0)
    if _signed_area(lon, lat).mean() < 0:  # north-up corners run clockwise in lon/lat
        lon, lat = lon[:, ::-1], lat[:, ::-1]
    wkb, bounds = _rings_to_wkb(lon, lat, np.zeros(len(row), np.int8))
    return Footprints(row, col, wkb, bounds, native, grid.crs, "affine-wgs84")


def _row_min(a: np.ndarray) -> np.ndarray:
    # Reducing a short last axis row by row is slow in numpy; over the first axis it is vectorised.
    return np.ascontiguousarray(a.T).min(axis=0)


def _row_max(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.T).max(axis=0)


def _signed_area(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 0.5 * (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)


# --- mapped grids: sampled edges, transformed -------------------------------------------------

def _mapped(grid: AffineGrid | GCPGrid, cy: int, cx: int, k: int, line_points: int,
            max_segment_deg: float, tolerance: float) -> Footprints:
    from pyproj import Transformer

    row, col, r0, r1, c0, c1 = _chunk_ranges(grid.height, grid.width, cy, cx)
    m = max(2, min(max(cy, cx) + 1, line_points))
    t = np.linspace(0.0, 1.0, m)
    r0f, r1f, c0f, c1f = (v.astype(np.float64)[:, None] for v in (r0, r1, c0, c1))
    # Edges top, right, bottom, left, each from one corner to the next.
    cols = np.stack([c0f + (c1f - c0f) * t, np.broadcast_to(c1f, (len(row), m)),
                     c1f - (c1f - c0f) * t, np.broadcast_to(c0f, (len(row), m))], axis=1)
    rows = np.stack([np.broadcast_to(r0f, (len(row), m)), r0f + (r1f - r0f) * t,
                     np.broadcast_to(r1f, (len(row), m)), r1f - (r1f - r0f) * t], axis=1)
    x, y = grid.pixel_to_crs(cols, rows)
    native = np.stack([x.min((1, 2)), y.min((1, 2)), x.max((1, 2)), y.max((1, 2))], axis=1)
    to_wgs84 = Transformer.from_crs(grid.crs, WGS84, always_xy=True)
    lon, lat = to_wgs84.transform(x, y)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise ValueError(f"some chunk edges of the grid cannot be transformed from {grid.crs} to WGS84 "
                         "(outside the projection's domain)")
    xyz = lonlat_to_xyz(lon, lat)
    valid = np.ones(xyz.shape[:3], bool)
    corners = xyz[:, :, 0]
    ring = xyz[:, :, :-1].reshape(len(row), -1, 3)  # edges run corner to corner, counter-clockwise or not
    wkb, bounds = _enclose(xyz, valid, corners, k, max_segment_deg, tolerance, ring=ring)
    return Footprints(row, col, wkb, bounds, native, grid.crs, "mapped")


# --- geolocated grids: pixel corners on chunk edges and scan edges ----------------------------

def _sample_positions(start: np.ndarray, stop: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer positions from start to stop (inclusive) at a uniform stride,
    the last one forced to `stop`; and whether each position ends a uniform
    step (for the second differences)."""
    span = stop - start
    stride = np.maximum(1, -(-span // (points - 1)))
    steps = np.arange(points)
    pos = np.minimum(start[:, None] + stride[:, None] * steps, stop[:, None])
    uniform = (pos - np.concatenate([pos[:, :1] - stride[:, None], pos[:, :-1]], axis=1)) == stride[:, None]
    return pos, uniform


def _geolocated(grid: GeolocatedGrid, cy: int, cx: int, k: int, line_points: int,
                max_segment_deg: float, tolerance: float) -> Footprints:
    rows_total, cols_total = grid.shape
    b = grid.block_rows
    corner = grid.corner_xyz  # (block, corner row in block, corner column) -> unit vectors
    row, col, r0, r1, c0, c1 = _chunk_ranges(rows_total, cols_total, cy, cx)
    granules = grid.granules
    granule = np.repeat(np.arange(granules, dtype=np.int32), len(row))
    row, col, c0, c1 = (np.tile(v, granules) for v in (row, col, c0, c1))
    offset = granule.astype(np.int64) * rows_total  # rows of all granules, one after another
    r0, r1 = np.tile(r0, granules) + offset, np.tile(r1, granules) + offset
    n = len(row)
    segments = max(1, int(((r1 - 1) // b - r0 // b).max()) + 1)
    block = r0[:, None] // b + np.arange(segments)
    seg_valid = block * b < r1[:, None]
    block = np.where(seg_valid, block, block[:, :1])
    lo = np.maximum(r0[:, None], block * b) - block * b  # local corner rows of each segment
    hi = np.minimum(r1[:, None], (block + 1) * b) - block * b
    mc = max(2, min(cx + 1, line_points))
    # Within one scan an edge column is a short smooth curve: its ends and
    # middle suffice (and give its sag) when scans are enclosed together.
    mr = max(2, min(min(cy, b) + 1, line_points if segments == 1 else 3))
    cpos, cuni = _sample_positions(c0, c1, mc)  # (n, mc)
    lines, masks = [], []
    n_idx = np.arange(n)
    last_seg = seg_valid.sum(1) - 1
    end_block, end_row = block[n_idx, last_seg], hi[n_idx, last_seg]
    # The chunk's first and last corner rows. Scan boundaries inside the chunk
    # need no line of their own: along track, the first and last scans reach
    # furthest; across track, the edge columns (every scan's corners) do.
    for blk, local_row in ((block[:, :1], lo[:, :1]), (end_block[:, None], end_row[:, None])):
        pts = corner(blk[:, :, None], local_row[:, :, None], cpos[:, None, :])
        lines.append(pts)
        masks.append(np.broadcast_to(cuni[:, None, :], pts.shape[:3]))
    rpos, runi = _sample_positions(lo.ravel(), hi.ravel(), mr)
    rpos, runi = rpos.reshape(n, segments, mr), runi.reshape(n, segments, mr)
    for edge_col in (c0, c1):
        pts = corner(block[:, :, None], rpos, edge_col[:, None, None])
        lines.append(pts)
        masks.append(runi & seg_valid[:, :, None])
    # Lines of different lengths side by side: pad the shorter with their last point.
    width = max(mc, mr)
    xyz = np.concatenate([_pad_last(p, width) for p in lines], axis=1)
    valid = np.concatenate([_pad_false(m_, width) for m_ in masks], axis=1)
    quad = np.stack([corner(block[:, 0], lo[:, 0], c0), corner(block[:, 0], lo[:, 0], c1),
                     corner(end_block, end_row, c1), corner(end_block, end_row, c0)], axis=1)
    ring = None
    if segments == 1:  # no scan boundary inside any chunk: its boundary ring is simple
        top, bottom, left, right = (p[:, 0] for p in lines)
        ring = np.concatenate([top[:, :-1], right[:, :-1], bottom[:, ::-1][:, :-1], left[:, ::-1][:, :-1]], axis=1)
    wkb, bounds = _enclose(xyz, valid, quad, k, max_segment_deg, tolerance, ring=ring)
    native = np.full((n, 4), np.nan)
    kind = "swath" if grid.scan_lines else "curvilinear"
    return Footprints(row, col, wkb, bounds, native, WGS84, kind, granule if granules > 1 else None)


def _granule_chunks(rows_total: int, cols_total: int, granules: int, cy: int, cx: int) -> tuple[np.ndarray, ...]:
    """Chunk ranges of every granule (rows of all granules one after another)."""
    row, col, r0, r1, c0, c1 = _chunk_ranges(rows_total, cols_total, cy, cx)
    granule = np.repeat(np.arange(granules, dtype=np.int32), len(row))
    row, col, c0, c1 = (np.tile(v, granules) for v in (row, col, c0, c1))
    offset = granule.astype(np.int64) * rows_total
    return granule, row, col, np.tile(r0, granules) + offset, np.tile(r1, granules) + offset, c0, c1


def _tie_points(grid: TiePointGrid, cy: int, cx: int, k: int, max_segment_deg: float,
                tolerance: float) -> Footprints:
    """Footprints of a tie-point grid from exact control points.

    The corner surface is bilinear in 3-D between tie points (within each
    scan), so over a rectangle of rows x columns it lies in the convex hull of
    its values at the rectangle's corners and at the tie rows/columns crossing
    it (a bilinear patch is a convex combination of its corners), and the
    gnomonic projection keeps convex hulls. Control points: the chunk's first
    and last corner rows at its edge columns and every tie column between,
    and its edge columns at each scan's first and last corner row (and tie
    rows between). No sampling, no sag estimate: the margin is round-off
    (and the 0.1 m between these corners and the mean of four expanded
    centres, `test_tie_point_corners_match_expand`)."""
    rows_total, cols_total = grid.shape
    b = grid.block_rows
    granules = grid.granules
    granule, row, col, r0, r1, c0, c1 = _granule_chunks(rows_total, cols_total, granules, cy, cx)
    n = len(row)
    tr = np.asarray(grid.tie_rows, np.float64)
    tc = np.asarray(grid.tie_cols, np.float64)
    per = tr.size // (rows_total // b) if grid.scan_lines else tr.size
    local_ties = tr[:per] if grid.scan_lines else tr
    segments = max(1, int(((r1 - 1) // b - r0 // b).max()) + 1)
    block = r0[:, None] // b + np.arange(segments)
    seg_valid = block * b < r1[:, None]
    block = np.where(seg_valid, block, block[:, :1])
    lo = np.maximum(r0[:, None], block * b) - block * b
    hi = np.minimum(r1[:, None], (block + 1) * b) - block * b
    n_idx = np.arange(n)
    last_seg = seg_valid.sum(1) - 1
    end_block, end_row = block[n_idx, last_seg], hi[n_idx, last_seg]
    # Columns of the first/last corner rows: the edge columns and the
    # interior tie columns between (bilinear breakpoints), per chunk column.
    x0, x1 = c0 - 0.5, c1 - 0.5
    inner = tc[1:-1]
    between = (inner > x0[:, None]) & (inner < x1[:, None])
    width = int(between.sum(1).max()) + 2
    xs = np.repeat(x1[:, None].astype(np.float64), width, axis=1)
    xs[:, 0] = x0
    rank = np.cumsum(between, axis=1)
    chunk_i, tie_j = np.nonzero(between)
    xs[chunk_i, rank[chunk_i, tie_j]] = inner[tie_j]
    top = grid.bilinear_xyz(block[:, :1], lo[:, :1] - 0.5, xs)
    bottom = grid.bilinear_xyz(end_block[:, None], end_row[:, None] - 0.5, xs)
    # Edge columns down each scan segment: its ends and the tie rows between.
    inner_rows = local_ties[1:-1]
    if segments > 1 and grid.scan_lines:
        # Many scans per chunk: the edge columns at every scan's first and
        # last corner row and inner tie rows, once per scan; rows outside the
        # chunk (the first and last scans' parts beyond it) give way to the
        # chunk's own corners (on the first and last corner rows, above).
        # The points go straight into one array (their order does not
        # matter to the k-DOP): top, bottom, then the left and the right
        # edge column's (scan, row) points.
        y_local = np.concatenate([[-0.5], inner_rows, [b - 0.5]])
        unique, which = np.unique(np.stack([x0, x1], axis=1), return_inverse=True)
        table = grid.block_rows_xyz(y_local, unique).reshape(-1, 3)
        at = ((block[:, None, :, None] * y_local.size + np.arange(y_local.size)) * unique.size
              + which.reshape(n, 2, 1, 1))  # (n, side, seg, rows)
        m = top.shape[1]
        points = np.empty((n, 2 * m + at[0].size, 3))
        points[:, :m], points[:, m:2 * m] = top, bottom
        points[:, 2 * m:] = table.take(at.reshape(n, -1), axis=0)
        inside = ((y_local >= lo[..., None] - 0.5) & (y_local <= hi[..., None] - 0.5)) & seg_valid[..., None]
        chunk_i, slot = np.nonzero(~inside.reshape(n, -1))
        side = inside[0].size
        points[chunk_i, 2 * m + slot] = top[chunk_i, 0]
        points[chunk_i, 2 * m + side + slot] = top[chunk_i, -1]
        quad = np.stack([top[:, 0], top[:, -1], bottom[:, -1], bottom[:, 0]], axis=1)
        wkb, bounds = _enclose(points[:, None], None, quad, k, max_segment_deg, tolerance)
        kind = "swath" if grid.scan_lines else "curvilinear"
        return Footprints(row, col, wkb, bounds, np.full((n, 4), np.nan), WGS84, kind,
                          granule if granules > 1 else None)
    else:
        ys = np.concatenate([lo[..., None] - 0.5,
                             np.clip(inner_rows, lo[..., None] - 0.5, hi[..., None] - 0.5),
                             hi[..., None] - 0.5], axis=2)  # (n, segments, 2 + inner)
        ys = np.where(seg_valid[..., None], ys, lo[:, :1, None] - 0.5)
        edges = grid.edge_columns_xyz(block[..., None], ys, np.stack([x0, x1], axis=1))  # (n, seg, ny, 2, 3)
    left, right = edges[..., 0, :], edges[..., 1, :]
    quad = np.stack([top[:, 0], top[:, -1], bottom[:, -1], bottom[:, 0]], axis=1)
    ring = None
    if segments == 1:  # one scan piece per chunk: its boundary is a simple ring
        ring = np.concatenate([top, right[:, 0, 1:-1], bottom[:, ::-1], left[:, 0, 1:-1][:, ::-1]], axis=1)
    points = np.concatenate([top, bottom, left.reshape(n, -1, 3), right.reshape(n, -1, 3)], axis=1)
    wkb, bounds = _enclose(points[:, None], None, quad, k, max_segment_deg, tolerance, ring=ring)
    native = np.full((n, 4), np.nan)
    kind = "swath" if grid.scan_lines else "curvilinear"
    return Footprints(row, col, wkb, bounds, native, WGS84, kind, granule if granules > 1 else None)


def _pad_last(a: np.ndarray, width: int) -> np.ndarray:
    if a.shape[2] == width:
        return a
    return np.concatenate([a, np.repeat(a[:, :, -1:], width - a.shape[2], axis=2)], axis=2)


def _pad_false(a: np.ndarray, width: int) -> np.ndarray:
    if a.shape[2] == width:
        return a
    return np.concatenate([a, np.zeros(a.shape[:2] + (width - a.shape[2],), bool)], axis=2)


# --- the enclosure ---------------------------------------------------------------------------

def _enclose(lines: np.ndarray, valid: np.ndarray | None, quad: np.ndarray, k: int,
             max_segment_deg: float, tolerance: float, ring: np.ndarray | None = None
             ) -> tuple[pa.Array, np.ndarray]:
    """Enclosing polygons of `lines` (n, L, M, 3 vectors, any length): the
    boundary `ring` (n, V, 3) pushed outward when given (chunks whose pixels
    do not fold over each other), otherwise a k-DOP with the edge normals of
    `quad` (n, 4, 3). `valid` marks samples ending a uniform step, whose
    second differences give the sampling margin; None: the points are exact
    control points (their hull holds the surface), no sampling margin."""
    n = lines.shape[0]
    lons, lats, counts, poles = [], [], [], []
    for s in range(0, n, BATCH):
        sl = slice(s, s + BATCH)
        lon, lat, count, pole = _enclose_batch(lines[sl], None if valid is None else valid[sl], quad[sl], k,
                                               math.radians(max_segment_deg), tolerance,
                                               None if ring is None else ring[sl])
        lons.append(lon)
        lats.append(lat)
        counts.append(count)
        poles.append(pole)
    return _ragged_to_wkb(np.concatenate(lons), np.concatenate(lats), np.concatenate(counts), np.concatenate(poles))


def _ragged_to_wkb(lon: np.ndarray, lat: np.ndarray, counts: np.ndarray, pole: np.ndarray
                   ) -> tuple[pa.Array, np.ndarray]:
    """WKB and bounds of rings given as flat vertex arrays and per-ring
    counts, in one buffer: simple polygons written with numpy, antimeridian
    crossings split and polar caps closed with shapely (few)."""
    n = counts.size
    start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    lo, hi = np.minimum.reduceat(lon, start), np.maximum.reduceat(lon, start)
    shift = np.where(lo >= 180.0, -360.0, np.where(hi <= -180.0, 360.0, 0.0))
    if shift.any():
        lon = lon + np.repeat(shift, counts)
        lo, hi = lo + shift, hi + shift
    bounds = np.stack([lo, np.minimum.reduceat(lat, start), hi, np.maximum.reduceat(lat, start)], axis=1)
    special = np.flatnonzero((pole != 0) | (lo < -180.0) | (hi > 180.0))
    sizes = 13 + 16 * (counts + 1)
    blobs = None
    if special.size:
        import shapely

        geoms = np.empty(special.size, dtype=object)
        s_counts, s_start, s_pole = counts[special], start[special], pole[special]
        capped = s_pole != 0
        # Caps work on rows of equal length: rings padded to a power of two, bucket by bucket.
        bucket = 2 ** np.ceil(np.log2(np.maximum(s_counts, 2))).astype(np.int64)
        for width in np.unique(bucket[capped]):
            sub = np.flatnonzero(capped & (bucket == width))
            at = s_start[sub, None] + np.minimum(np.arange(width), s_counts[sub, None] - 1)
            geoms[sub] = _polar_caps(lon[at], lat[at], s_pole[sub])
        if (~capped).any():
            sub = np.flatnonzero(~capped)
            c_counts = s_counts[sub]
            at = np.repeat(s_start[sub] - (np.cumsum(c_counts) - c_counts), c_counts) + np.arange(int(c_counts.sum()))
            geoms[sub] = _split_antimeridian_ragged(lon[at], lat[at], np.repeat(np.arange(sub.size), c_counts))
        bounds[special] = shapely.bounds(geoms)
        blobs = shapely.to_wkb(geoms)
        sizes[special] = np.fromiter(map(len, blobs), np.int64, blobs.size)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    total = int(offsets[-1])
    simple = np.ones(n, bool)
    simple[special] = False
    # Simple rings: per record a 13-byte header then the closed ring's
    # coordinates; the coordinates of all records are one float array, and
    # the headers go in between (np.insert: one pass over the bytes).
    s_counts = counts[simple]
    closed = s_counts + 1
    ring_start = (np.cumsum(closed) - closed).astype(np.int64)
    coords = np.empty((int(closed.sum()), 2), "<f8")
    if s_counts.size:
        keep = np.ones(coords.shape[0], bool)
        keep[ring_start + s_counts] = False  # the closing vertices
        flat_simple = np.repeat(simple, counts)
        coords[keep, 0], coords[keep, 1] = lon[flat_simple], lat[flat_simple]
        coords[~keep] = coords[ring_start]
    header = np.zeros((s_counts.size, 13), np.uint8)
    header[:, :9] = np.frombuffer(struct.pack("<BII", 1, 3, 1), np.uint8)
    header[:, 9:] = closed.astype("<u4").view(np.uint8).reshape(-1, 4)
    body = np.insert(coords.view(np.uint8).ravel(), np.repeat(ring_start * 16, 13), header.ravel())
    if blobs is None:
        buf = body
    else:
        # Runs of simple records from `body`, the special ones' WKB between them.
        cut = offsets[special] - (np.cumsum(sizes[special]) - sizes[special])  # their place in `body`
        pieces, prev = [], 0
        for at, blob in zip(cut.tolist(), blobs):
            pieces += [body[prev:at], np.frombuffer(blob, np.uint8)]
            prev = at
        pieces.append(body[prev:])
        buf = np.concatenate(pieces)
    large = total >= 2**31 - 1
    kind = pa.large_binary() if large else pa.binary()
    offsets = offsets.astype(np.int64 if large else np.int32)
    return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets), pa.py_buffer(buf)]), bounds


def _pad_ring(a: np.ndarray, width: int) -> np.ndarray:
    # A ring padded by repeating its last vertex is the same polygon.
    return a if a.shape[1] == width else np.concatenate([a, np.repeat(a[:, -1:], width - a.shape[1], 1)], 1)


def _frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre and east/north unit vectors of the tangent plane of each chunk."""
    centre = points.reshape(points.shape[0], -1, 3).sum(axis=1)
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    east = np.cross(np.array([0.0, 0.0, 1.0]), centre)
    polar = np.linalg.norm(east, axis=1) < 1e-12
    east[polar] = np.cross(np.array([0.0, 1.0, 0.0]), centre[polar])
    east /= np.linalg.norm(east, axis=1, keepdims=True)
    return centre, east, np.cross(centre, east)


def _to_plane(p: np.ndarray, c: np.ndarray, e: np.ndarray, nrt: np.ndarray) -> tuple[np.ndarray, ...]:
    basis = np.stack([e, nrt, c], axis=2)  # (n, 3, 3): one batched matrix product
    q = np.matmul(p.reshape(p.shape[0], -1, 3), basis).reshape(p.shape)
    w = q[..., 2]
    safe = np.maximum(w, LARGE_COS / 4)
    return q[..., 0] / safe, q[..., 1] / safe, w


def _from_plane(gx: np.ndarray, gy: np.ndarray, c: np.ndarray, e: np.ndarray, nrt: np.ndarray) -> np.ndarray:
    return c[:, None] + gx[..., None] * e[:, None] + gy[..., None] * nrt[:, None]


def _sampling_sag(gx: np.ndarray, gy: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per chunk, twice the largest chord sag between consecutive samples of
    its lines: the second difference across the line / 8 (the part along the
    line is uneven pixel spacing, not curvature)."""
    n = gx.shape[0]
    ax, ay = gx[..., :-2] - 2 * gx[..., 1:-1] + gx[..., 2:], gy[..., :-2] - 2 * gy[..., 1:-1] + gy[..., 2:]
    tx, ty = gx[..., 2:] - gx[..., :-2], gy[..., 2:] - gy[..., :-2]
    d2 = np.abs(ax * ty - ay * tx) / np.maximum(np.hypot(tx, ty), 1e-300)
    d2 = np.where(valid[..., 1:-1] & valid[..., 2:], d2, 0.0)
    return d2.reshape(n, -1).max(axis=1, initial=0.0) / 4


def _enclose_batch(lines: np.ndarray, valid: np.ndarray | None, quad: np.ndarray, k: int, max_segment: float,
                   tolerance: float, ring_xyz: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """(flat ring lon, flat ring lat, vertices per chunk, pole) of a batch.

    In the tangent plane the polygon P holds every point (plus `margin`: the
    sampling sag, or round-off for exact control points). Its edges are great
    circles; stored edges are straight in longitude/latitude. The polygon is
    pushed out to P' (by `delta` > `margin`) and each edge of P' split into
    pieces short enough that a straight lon/lat piece stays within
    (`delta` - `margin`) cos^2(rho) of its great-circle arc (rho: the largest
    angle from the centre), a bound (`_split_counts`), not an estimate: so no
    stored edge reaches P, and every point is inside. `delta` is sized from
    `tolerance` x the polygon's width (2 area / perimeter)."""
    n = lines.shape[0]
    c, e, nrt = _frame(quad)
    gx, gy, w = _to_plane(lines, c, e, nrt)  # (n, L, M)
    large = w.reshape(n, -1).min(axis=1) < LARGE_COS
    margin = EPS_RAD + (0.0 if valid is None else _sampling_sag(gx, gy, valid))
    margin = np.broadcast_to(margin, (n,)).copy()
    if ring_xyz is not None:
        qx, qy, _ = _to_plane(ring_xyz, c, e, nrt)
        make = _offset_ring(qx, qy, max_segment, large)
    else:
        make = _kdop(gx, gy, quad, c, e, nrt, k, max_segment, large)
    bx, by, _ = make(margin, 1)
    area = np.abs(_signed_area(bx, by))
    perimeter = np.hypot(np.roll(bx, -1, 1) - bx, np.roll(by, -1, 1) - by).sum(axis=1)
    allowed = np.maximum(tolerance * 2 * area / np.maximum(perimeter, 1e-300), EPS_RAD)
    # The push that lets straight pieces deviate by `allowed` (the polygon's
    # corners move out by a few times the push: cos^2(rho) taken beyond them).
    r2 = _row_max(bx * bx + by * by)
    reach = np.sqrt(r2) + 4 * (allowed * (1 + r2))
    delta = margin + allowed * (1 + reach * reach)
    rx, ry, inside = make(delta, 1)
    pole = np.zeros(n, np.int8)
    for sign in (1, -1):
        wz = sign * c[:, 2]
        front = wz > 0
        zx = np.where(front, sign * e[:, 2] / np.where(front, wz, 1), 0)
        zy = np.where(front, sign * nrt[:, 2] / np.where(front, wz, 1), 0)
        pole[front & inside(zx, zy)] = sign
    # What the pieces may deviate, from the pushed polygon itself: a bound whatever `delta` was.
    slack = (delta - margin) / (1 + _row_max(rx * rx + ry * ry))
    parts = _split_counts(rx, ry, c, e, nrt, slack, max_segment)
    groups = []
    # Near a pole the curvature peaks on a short stretch of an edge: edges
    # needing many pieces are cut in PRESPLIT first and each cut bounded alone.
    heavy = ((parts > PRESPLIT) | (parts < 0)).any(axis=1) & ~large
    normal = ~heavy & ~large
    if normal.any():
        sel = np.flatnonzero(normal)
        groups.append((sel, *_split_edges(rx[sel], ry[sel], parts[sel], c[sel], e[sel], nrt[sel])))
    box = large.copy()
    if heavy.any():
        sel = np.flatnonzero(heavy)
        pre = np.where((parts[sel] > PRESPLIT) | (parts[sel] < 0), PRESPLIT, 1)
        hx, hy = _subdivide(rx[sel], ry[sel], pre)
        hparts = _split_counts(hx, hy, c[sel], e[sel], nrt[sel], slack[sel], max_segment, exact=True)
        ok = (hparts >= 0).all(axis=1)
        box[sel[~ok]] = True
        if ok.any():
            s_ok = sel[ok]
            groups.append((s_ok, *_split_edges(hx[ok], hy[ok], hparts[ok], c[s_ok], e[s_ok], nrt[s_ok])))
    if box.any():
        # Too wide for a tangent plane, or an edge over a pole: a lon/lat box
        # (all longitudes) over the latitudes the pushed polygon's arcs reach.
        sel = np.flatnonzero(box)
        a = c[sel, None] + rx[sel][..., None] * e[sel, None] + ry[sel][..., None] * nrt[sel, None]
        a /= np.linalg.norm(a, axis=-1, keepdims=True)
        z_lo, z_hi = _arc_z_range(a, np.roll(a, -1, 1))
        south = np.where(pole[sel] < 0, -90.0, np.degrees(np.arcsin(_row_min(z_lo))))
        north = np.where(pole[sel] > 0, 90.0, np.degrees(np.arcsin(_row_max(z_hi))))
        if large[sel].any():  # the plane does not hold these: latitudes of the points, widened
            _, lat_pts = xyz_to_lonlat(lines[sel].reshape(sel.size, -1, 3))
            pad = np.degrees(2 * delta[sel])
            wide = large[sel]
            south[wide] = np.where(pole[sel][wide] < 0, -90.0, np.maximum(lat_pts[wide].min(1) - pad[wide], -90))
            north[wide] = np.where(pole[sel][wide] > 0, 90.0, np.minimum(lat_pts[wide].max(1) + pad[wide], 90))
        box_lon = np.broadcast_to(np.array([-180.0, 180.0, 180.0, -180.0]), (sel.size, 4))
        box_lat = np.stack([south, south, north, north], axis=1)
        groups.append((sel, box_lon.ravel(), box_lat.ravel(), np.full(sel.size, 4)))
        pole[sel] = 0
    return (*_merge_ragged(groups, n), pole)


def _subdivide(rx: np.ndarray, ry: np.ndarray, parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rings (n, V) with edge j of ring i cut in parts[i, j] equal steps, as
    rows padded with their last vertex (zero-length edges)."""
    n, v = rx.shape
    flat = parts.ravel()
    edge = np.repeat(np.arange(n * v), flat)
    t = (np.arange(edge.size) - (np.cumsum(flat) - flat)[edge]) / flat[edge]
    x0, y0 = rx.ravel(), ry.ravel()
    x1, y1 = np.roll(rx, -1, 1).ravel(), np.roll(ry, -1, 1).ravel()
    x, y = x0[edge] + (x1 - x0)[edge] * t, y0[edge] + (y1 - y0)[edge] * t
    counts = parts.sum(axis=1)
    at = (np.cumsum(counts) - counts)[:, None] + np.minimum(np.arange(int(counts.max())), counts[:, None] - 1)
    return x[at], y[at]


def _merge_ragged(groups: list[tuple[np.ndarray, ...]], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat lon, lat and counts of `n` rings, from groups (chunk positions, flat lon, flat lat, counts)."""
    if len(groups) == 1 and groups[0][0].size == n:
        return groups[0][1:]
    counts = np.zeros(n, np.int64)
    for sel, _, _, count in groups:
        counts[sel] = count
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    lon, lat = np.empty(int(counts.sum())), np.empty(int(counts.sum()))
    for sel, g_lon, g_lat, count in groups:
        g_start = np.concatenate([[0], np.cumsum(count)[:-1]])
        at = np.repeat(start[sel] - g_start, count) + np.arange(int(count.sum()))
        lon[at], lat[at] = g_lon, g_lat
    return lon, lat, counts


def _arc_z_range(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least and largest z (sine of latitude) on the short great-circle arcs a -> b."""
    normal = np.cross(a, b)
    size = np.linalg.norm(normal, axis=-1, keepdims=True)
    normal = normal / np.maximum(size, 1e-300)
    lo, hi = np.minimum(a[..., 2], b[..., 2]), np.maximum(a[..., 2], b[..., 2])
    for sign in (1.0, -1.0):
        top = sign * np.array([0.0, 0.0, 1.0]) - sign * normal[..., 2:3] * normal
        on_arc = (((np.cross(a, top) * normal).sum(-1) >= 0) & ((np.cross(top, b) * normal).sum(-1) >= 0)
                  & (size[..., 0] > 1e-15))
        extreme = sign * np.linalg.norm(top, axis=-1)
        if sign > 0:
            hi = np.where(on_arc, np.maximum(hi, extreme), hi)
        else:
            lo = np.where(on_arc, np.minimum(lo, extreme), lo)
    return np.clip(lo, -1.0, 1.0), np.clip(hi, -1.0, 1.0)


# Straight lon/lat pieces: at most this many per polygon edge (more: the chunk
# falls back to a box, e.g. an edge passing within metres of a pole); edges
# needing more than PRESPLIT are first cut in PRESPLIT, each cut bounded alone.
MAX_PARTS = 4096
PRESPLIT = 32


def _split_counts(rx: np.ndarray, ry: np.ndarray, c: np.ndarray, e: np.ndarray, nrt: np.ndarray,
                  slack: np.ndarray, max_segment: float, exact: bool = False) -> np.ndarray:
    """Pieces per edge (n, V) so that each straight lon/lat piece stays within
    `slack` (radians, per chunk) of its great-circle arc; -1 where no count
    can (an arc that may reach a pole).

    On a great circle at unit speed with azimuth a, in (lon, lat) radians
    (geodesic equations): |d2 lat/ds2| = |tan lat| sin^2 a <= |tan lat| and
    |d2 lon/ds2| = |tan lat sin 2a| / cos lat <= 2 |tan lat| |cos a| / cos lat;
    |cos a| changes by at most |tan lat| per radian (Clairaut). A piece of arc
    length S is then within S^2/8 x that curvature of its chord, with lat the
    arc's largest |latitude|: at most its ends' / cos(S/2), or exactly
    (`exact`, `_arc_z_range`). Uniform steps in the plane give pieces no
    longer on the sphere than in the plane (the gnomonic scale is >= 1);
    lon/lat distance is >= distance on the sphere, so the bound holds as a
    lon/lat distance. All in plane coordinates: z = (c + x e + y n)_z / s,
    s = sqrt(1 + x^2 + y^2)."""
    x1, y1 = np.roll(rx, -1, 1), np.roll(ry, -1, 1)
    ex, ey = x1 - rx, y1 - ry
    length = np.hypot(ex, ey)
    s0, s1 = np.sqrt(1 + rx * rx + ry * ry), np.sqrt(1 + x1 * x1 + y1 * y1)
    cz, ez, nz = c[:, 2:3], e[:, 2:3], nrt[:, 2:3]
    z0, z1 = (cz + rx * ez + ry * nz) / s0, (cz + x1 * ez + y1 * nz) / s1
    dz = ex * ez + ey * nz  # the step's 3-D direction, z part
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        if exact:
            a = c[:, None] + rx[..., None] * e[:, None] + ry[..., None] * nrt[:, None]
            a /= s0[..., None]
            z_lo, z_hi = _arc_z_range(a, np.roll(a, -1, 1))
            z = np.maximum(-z_lo, z_hi)
        else:
            z = np.maximum(np.abs(z0), np.abs(z1)) / np.cos(np.minimum(length, 3.0) / 2)
        cos_lat = np.sqrt(np.maximum(1 - z * z, 0.0))
        tan_lat = z / cos_lat
        # |cos a| at each end: the step's 3-D direction d made tangent at the
        # point p, against north: (d_z - p_z (d.p)) / (|d - (d.p) p| cos lat_p).
        ends = []
        for x, y, s, zp in ((rx, ry, s0, z0), (x1, y1, s1, z1)):
            along = (x * ex + y * ey) / s
            tangent = np.sqrt(np.maximum(length * length - along * along, 1e-300))
            ends.append(np.abs(dz - zp * along) / (tangent * np.sqrt(np.maximum(1 - zp * zp, 1e-300))))
        cos_a = np.minimum(np.maximum(*ends) + np.minimum(length, 3.0) * tan_lat, 1.0)
        curvature = tan_lat * np.sqrt(1 + (2 * cos_a / cos_lat) ** 2)
        need = np.maximum(length * np.sqrt(curvature / (8 * slack[:, None])), length / max_segment)
        parts = np.where(length > 0, np.maximum(np.ceil(need), 1), 0)
        parts[:, 0] = np.maximum(parts[:, 0], 1)  # a ring keeps at least one vertex
    bad = (z >= 1 - 1e-12) | ~np.isfinite(parts) | (parts > MAX_PARTS)
    return np.where(bad, -1, parts).astype(np.int64)


def _split_edges(rx: np.ndarray, ry: np.ndarray, parts: np.ndarray, c: np.ndarray, e: np.ndarray,
                 nrt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat lon/lat of the rings (n, V) with each edge split in `parts`
    (uniform steps in the plane), longitudes continuous about each centre."""
    # Each chunk's edges and each edge's pieces are contiguous: np.repeat
    # instead of gathers by owner, and one coordinate at a time (no (N, 3)
    # temporaries): the same arithmetic as c + x e + y n.
    flat = parts.ravel()
    t = (np.arange(int(flat.sum())) - np.repeat(np.cumsum(flat) - flat, flat)) / np.repeat(flat, flat)
    x0, y0 = rx.ravel(), ry.ravel()
    x1, y1 = np.roll(rx, -1, 1).ravel(), np.roll(ry, -1, 1).ravel()
    x = np.repeat(x0, flat) + np.repeat(x1 - x0, flat) * t
    y = np.repeat(y0, flat) + np.repeat(y1 - y0, flat) * t
    counts = parts.sum(axis=1)
    px, py, pz = ((np.repeat(c[:, i], counts) + x * np.repeat(e[:, i], counts)) + y * np.repeat(nrt[:, i], counts)
                  for i in range(3))
    lon = np.degrees(np.arctan2(py, px))
    lat = np.degrees(np.arctan2(pz, np.hypot(px, py)))
    lon_c = np.repeat(xyz_to_lonlat(c)[0], counts)
    lon = lon_c + _wrap(lon - lon_c)
    return lon, lat, parts.sum(axis=1)


def _kdop(gx: np.ndarray, gy: np.ndarray, quad: np.ndarray, c: np.ndarray, e: np.ndarray, nrt: np.ndarray,
          k: int, max_segment: float, large: np.ndarray) -> Callable[..., tuple]:
    """The k-DOP enclosure: returns make(margin) -> (ring x, ring y, inside(x, y))."""
    n = gx.shape[0]
    # Directions: k evenly spaced, the closest four replaced by the chunk's edge normals.
    qx, qy, _ = _to_plane(quad, c, e, nrt)
    ex, ey = np.roll(qx, -1, 1) - qx, np.roll(qy, -1, 1) - qy
    orient = np.sign(_signed_area(qx, qy))[:, None]
    normal = np.arctan2(-ex * orient, ey * orient) % (2 * np.pi)
    theta = np.broadcast_to(np.arange(k) * (2 * np.pi / k), (n, k)).copy()
    degenerate = np.hypot(ex, ey) < 1e-12
    slot = np.rint(normal / (2 * np.pi / k)).astype(np.int64) % k
    for j in range(4):  # four edges, each vectorised over chunks
        ok = ~degenerate[:, j]
        theta[np.flatnonzero(ok), slot[ok, j]] = normal[ok, j]
    theta.sort(axis=1)
    ux, uy = np.cos(theta), np.sin(theta)
    # One (k x 2) @ (2 x points) product per chunk, reduced along its rows,
    # SUPPORT_STEP chunks at a time: the temporary stays in cache.
    dirs = np.stack([ux, uy], axis=2)
    pts = np.stack([gx.reshape(n, -1), gy.reshape(n, -1)], axis=1)
    support = np.empty((n, k))
    tmp = np.empty((min(n, SUPPORT_STEP), k, pts.shape[2]))
    for s in range(0, n, SUPPORT_STEP):
        m = min(SUPPORT_STEP, n - s)
        np.matmul(dirs[s:s + m], pts[s:s + m], out=tmp[:m])
        tmp[:m].max(axis=2, out=support[s:s + m])
    ux1, uy1 = np.roll(ux, -1, 1), np.roll(uy, -1, 1)
    det = ux * uy1 - uy * ux1

    def make(margin: np.ndarray, refine: int, sel: np.ndarray | slice = slice(None)) -> tuple:
        sux, suy, sux1, suy1, sdet = ux[sel], uy[sel], ux1[sel], uy1[sel], det[sel]
        h = support[sel] + margin[:, None]
        h1 = np.roll(h, -1, 1)
        vx, vy = (h * suy1 - h1 * suy) / sdet, (sux * h1 - sux1 * h) / sdet
        m = refine
        t = np.arange(m) / m
        rx = (vx[:, :, None] + (np.roll(vx, -1, 1) - vx)[:, :, None] * t).reshape(len(h), -1)
        ry = (vy[:, :, None] + (np.roll(vy, -1, 1) - vy)[:, :, None] * t).reshape(len(h), -1)

        def inside(zx: np.ndarray, zy: np.ndarray) -> np.ndarray:
            return ((sux * zx[:, None] + suy * zy[:, None]) <= h).all(axis=1)
        return rx, ry, inside
    return make


def _offset_ring(qx: np.ndarray, qy: np.ndarray, max_segment: float, large: np.ndarray) -> Callable[..., tuple]:
    """The sampled boundary ring pushed outward by `margin` (mitred parallel
    offset): returns make(margin) -> (ring x, ring y, inside(x, y))."""
    n, v = qx.shape
    flip = _signed_area(qx, qy) < 0
    qx, qy = np.where(flip[:, None], qx[:, ::-1], qx), np.where(flip[:, None], qy[:, ::-1], qy)
    ex, ey = np.roll(qx, -1, 1) - qx, np.roll(qy, -1, 1) - qy
    length = np.hypot(ex, ey)
    # Zero-length edges (samples clipped at a short edge chunk) take the
    # direction of the last real edge before them.
    real = length > 0
    last = np.maximum.accumulate(np.where(real, np.arange(v), -1), axis=1)
    last = np.where(last < 0, np.argmax(real, axis=1)[:, None], last)
    rows = np.arange(n)[:, None]
    nx_, ny_ = ey[rows, last] / length[rows, last], -ex[rows, last] / length[rows, last]  # outward (CCW)
    px, py = np.roll(nx_, 1, 1), np.roll(ny_, 1, 1)  # the incoming edge's normal
    denom = np.maximum(1.0 + nx_ * px + ny_ * py, 0.2)
    bx, by = (nx_ + px) / denom, (ny_ + py) / denom

    def make(margin: np.ndarray, refine: int, sel: np.ndarray | slice = slice(None)) -> tuple:
        rx, ry = qx[sel] + margin[:, None] * bx[sel], qy[sel] + margin[:, None] * by[sel]
        parts = refine
        if parts > 1:
            t = np.arange(parts) / parts
            rx = (rx[:, :, None] + (np.roll(rx, -1, 1) - rx)[:, :, None] * t).reshape(len(rx), -1)
            ry = (ry[:, :, None] + (np.roll(ry, -1, 1) - ry)[:, :, None] * t).reshape(len(ry), -1)

        def inside(zx: np.ndarray, zy: np.ndarray) -> np.ndarray:
            # Even-odd rule, vectorised over chunks and edges.
            x0, y0, x1, y1 = rx, ry, np.roll(rx, -1, 1), np.roll(ry, -1, 1)
            zy_, zx_ = zy[:, None], zx[:, None]
            straddle = (y0 > zy_) != (y1 > zy_)
            xcross = x0 + (zy_ - y0) * (x1 - x0) / np.where(y1 != y0, y1 - y0, 1)
            return (straddle & (zx_ < xcross)).sum(axis=1) % 2 == 1
        return rx, ry, inside
    return make


def _wrap(d: np.ndarray) -> np.ndarray:
    return (d + 180.0) % 360.0 - 180.0


# --- rings to WKB ----------------------------------------------------------------------------

def polygon_wkb(lon: np.ndarray, lat: np.ndarray) -> pa.Array:
    """WKB Polygons (little-endian, one ring, closed here) from (n, V) vertex arrays, built in numpy."""
    n, v = lon.shape
    npts = v + 1
    size = 13 + 16 * npts
    buf = np.empty((n, size), np.uint8)
    buf[:, :13] = np.frombuffer(struct.pack("<BIII", 1, 3, 1, npts), np.uint8)
    coords = np.empty((n, npts, 2), "<f8")
    coords[:, :v, 0], coords[:, :v, 1] = lon, lat
    coords[:, v] = coords[:, 0]
    buf[:, 13:] = coords.view(np.uint8).reshape(n, 16 * npts)
    large = n * size >= 2**31 - 1
    offsets = np.arange(n + 1, dtype=np.int64 if large else np.int32) * size
    kind = pa.large_binary() if large else pa.binary()
    return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets), pa.py_buffer(buf)])


def _rings_to_wkb(lon: np.ndarray, lat: np.ndarray, pole: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """WKB and bounds of rings (n, V) in lon/lat: simple polygons in numpy,
    antimeridian crossings split and polar caps closed with shapely."""
    lon = lon.copy()
    lo, hi = _row_min(lon), _row_max(lon)
    shift = np.where(lo >= 180.0, -360.0, np.where(hi <= -180.0, 360.0, 0.0))
    if shift.any():
        lon += shift[:, None]
        lo, hi = lo + shift, hi + shift
    crossing = (pole == 0) & ((lo < -180.0) | (hi > 180.0))
    simple = (pole == 0) & ~crossing
    bounds = np.stack([lo, _row_min(lat), hi, _row_max(lat)], axis=1)
    if simple.all():
        return polygon_wkb(lon, lat), bounds
    import shapely

    special = np.flatnonzero(~simple)
    geoms = np.empty(len(special), dtype=object)
    sp_pole = pole[special]
    capped = sp_pole != 0
    if capped.any():
        geoms[capped] = _polar_caps(lon[special[capped]], lat[special[capped]], sp_pole[capped])
    if (~capped).any():
        geoms[~capped] = _split_antimeridian(lon[special[~capped]], lat[special[~capped]])
    bounds[special] = shapely.bounds(geoms)
    parts = [polygon_wkb(lon[simple], lat[simple]), pa.array(shapely.to_wkb(geoms), pa.binary())]
    if parts[0].type != parts[1].type:
        parts[1] = parts[1].cast(parts[0].type)
    order = np.concatenate([np.flatnonzero(simple), special])
    merged = pa.concat_arrays(parts)
    return merged.take(pa.array(np.argsort(order, kind="stable"))), bounds


def _split_antimeridian(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Rings (n, V) with longitudes past +-180: their parts in [-180, 180]
    (as written since the first footprint indexes: the demo digests pin it)."""
    import shapely

    ring = np.stack([lon, lat], axis=-1)
    polys = shapely.polygons(np.concatenate([ring, ring[:, :1]], axis=1))
    world = shapely.box(-180.0, -90.0, 180.0, 90.0)
    out = shapely.intersection(polys, world)
    for shift in (360.0, -360.0):
        moved = shapely.transform(polys, lambda xy, s=shift: xy + np.array([s, 0.0]))
        out = shapely.union(out, shapely.intersection(moved, world))
    return shapely.orient_polygons(out)


def _split_antimeridian_ragged(lon: np.ndarray, lat: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """Rings (flat vertices, ring number of each) with longitudes past +-180:
    their parts in [-180, 180] (the ring, and the ring moved by 360 towards
    the other side, each cut to the world)."""
    import shapely

    polys = shapely.polygons(shapely.linearrings(np.stack([lon, lat], axis=1), indices=ring))
    hi = np.maximum.reduceat(lon, np.flatnonzero(np.diff(ring, prepend=-1)))
    shift = np.where(hi > 180.0, -360.0, 360.0)[ring]
    moved = shapely.polygons(shapely.linearrings(np.stack([lon + shift, lat], axis=1), indices=ring))
    world = shapely.box(-180.0, -90.0, 180.0, 90.0)
    out = shapely.union(shapely.intersection(polys, world), shapely.intersection(moved, world))
    return shapely.orient_polygons(out)


def _polar_caps(lon: np.ndarray, lat: np.ndarray, pole: np.ndarray) -> np.ndarray:
    """Rings around a pole as polygons closed through it along lon -180/180."""
    import shapely

    n, v = lon.shape
    wrapped = _wrap(lon)
    forward = (_wrap(np.roll(wrapped, -1, 1) - wrapped)).sum(axis=1) > 0
    wrapped = np.where(forward[:, None], wrapped, wrapped[:, ::-1])
    lat = np.where(forward[:, None], lat, lat[:, ::-1])
    start = np.argmin(wrapped, axis=1)
    idx = (start[:, None] + np.arange(v)) % v
    rows = np.arange(n)[:, None]
    x, y = wrapped[rows, idx], lat[rows, idx]
    # Latitude where the ring crosses lon 180 (between its last and first vertex).
    span = x[:, 0] + 360.0 - x[:, -1]
    frac = np.where(span > 0, (180.0 - x[:, -1]) / np.where(span > 0, span, 1), 0.5)
    y180 = y[:, -1] + (y[:, 0] - y[:, -1]) * frac
    cap = np.where(pole > 0, 90.0, -90.0)
    xs = np.concatenate([np.full((n, 1), -180.0), x, np.full((n, 1), 180.0), np.full((n, 2), 180.0)], axis=1)
    xs[:, -1] = -180.0
    ys = np.concatenate([y180[:, None], y, y180[:, None], cap[:, None], cap[:, None]], axis=1)
    polys = shapely.polygons(np.stack([xs, ys], axis=-1))
    return shapely.orient_polygons(shapely.make_valid(polys))
