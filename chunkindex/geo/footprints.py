"""Per-chunk footprint polygons in WGS84 longitude/latitude, as WKB columns.

One footprint per spatial chunk (rows of chunks in C order). How each grid
kind is handled:

- **Affine grid in WGS84 longitude/latitude** (north-up, south-up or
  rotated): the chunk's four corners, an exact quadrilateral (zero excess).
- **Any other mapped grid** (affine in a projected or other geographic CRS,
  GCP polynomial): each chunk edge is sampled at up to `line_points` points,
  transformed to WGS84 with pyproj, and enclosed as below.
- **Geolocated grids** (curvilinear, swath, tie points): the chunk's pixel
  corners on its edges, plus, for scanned swaths, the first and last corner
  rows of every scan inside the chunk (bowtie overlap: a scan's edges may lie
  outside the chunk's outer rows), sampled at up to `line_points` points per
  line.

Enclosing: the points are projected onto the plane tangent at the chunk's
centre (gnomonic: great circles are straight lines, so the enclosure is the
same anywhere on the globe, across the antimeridian and at the poles), and
the chunk's polygon is a `k`-DOP there: the intersection of the half-planes
bounding the points in `k` directions (evenly spaced, with the four whose
directions are closest to the chunk's own edge normals replaced by those
normals, so quadrilateral chunks stay quadrilaterals). That is pure numpy
(`max` over points per direction), contains every sampled point, and is
expanded by a margin that bounds what sampling can miss: the sag of a chord
between sampled points, estimated from the second difference of the samples
along each line (times 2), plus the difference between a great-circle
segment and the straight longitude/latitude segment stored (edges are
densified to segments of at most `max_segment_deg`).

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
from typing import NamedTuple

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
BATCH = 2048  # chunks enclosed at once (memory: BATCH x k x points doubles)
LARGE_COS = math.cos(math.radians(75))  # a chunk wider than this from its centre leaves the tangent plane

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
                    max_segment_deg: float = 2.0) -> Footprints:
    """Footprints of every chunk of `grid` cut into chunks of `chunk_shape` (rows, cols).

    Args:
        grid: an `AffineGrid`, `GCPGrid`, `GeolocatedGrid` or `TiePointGrid`.
        chunk_shape: chunk size in pixels along rows and columns.
        k: directions of the enclosing polygon (>= 8) for non-exact footprints.
        line_points: most points sampled along each chunk edge or scan line.
        max_segment_deg: longest straight edge stored (great circles are densified).

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
        return _geolocated(grid, cy, cx, k, line_points, max_segment_deg)
    if isinstance(grid, AffineGrid) and _is_wgs84(grid.crs):
        return _affine_wgs84(grid, cy, cx)
    if isinstance(grid, AffineGrid | GCPGrid):
        return _mapped(grid, cy, cx, k, line_points, max_segment_deg)
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
            max_segment_deg: float) -> Footprints:
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
    wkb, bounds = _enclose(xyz, valid, corners, k, max_segment_deg, ring=ring)
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


def _geolocated(grid: GeolocatedGrid | TiePointGrid, cy: int, cx: int, k: int, line_points: int,
                max_segment_deg: float) -> Footprints:
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
    wkb, bounds = _enclose(xyz, valid, quad, k, max_segment_deg, ring=ring)
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

def _enclose(lines: np.ndarray, valid: np.ndarray, quad: np.ndarray, k: int,
             max_segment_deg: float, ring: np.ndarray | None = None) -> tuple[pa.Array, np.ndarray]:
    """Enclosing polygons of `lines` (n, L, M, 3 unit vectors; `valid` marks
    samples that end a uniform step): the sampled boundary `ring` (n, V, 3)
    itself when given (chunks whose pixels do not fold over each other),
    otherwise a k-DOP with the edge normals of `quad` (n, 4, 3)."""
    n = lines.shape[0]
    groups: dict[int, list[tuple[np.ndarray, ...]]] = {}
    for s in range(0, n, BATCH):
        sl = slice(s, s + BATCH)
        for idx, lon, lat, pole in _enclose_batch(lines[sl], valid[sl], quad[sl], k, math.radians(max_segment_deg),
                                                  None if ring is None else ring[sl]):
            groups.setdefault(lon.shape[1], []).append((idx + s, lon, lat, pole))
    # Rings of one vertex count at a time (chunks near a pole need more).
    order, wkbs, bounds = [], [], []
    for parts in groups.values():
        idx, lon, lat, pole = (np.concatenate(p) for p in zip(*parts))
        wkb, b = _rings_to_wkb(lon, lat, pole)
        order.append(idx)
        wkbs.append(wkb)
        bounds.append(b)
    if len(wkbs) == 1 and (order[0] == np.arange(n)).all():
        return wkbs[0], bounds[0]
    position = np.argsort(np.concatenate(order), kind="stable")
    kind = pa.large_binary() if any(w.type == pa.large_binary() for w in wkbs) else pa.binary()
    merged = pa.concat_arrays([w.cast(kind) for w in wkbs])
    return merged.take(pa.array(position)), np.concatenate(bounds)[position]


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


def _enclose_batch(lines: np.ndarray, valid: np.ndarray, quad: np.ndarray, k: int, max_segment: float,
                   ring_xyz: np.ndarray | None) -> list[tuple[np.ndarray, ...]]:
    """(chunk positions, ring lon, ring lat, pole) per group of equal ring size."""
    n = lines.shape[0]
    c, e, nrt = _frame(lines)
    gx, gy, w = _to_plane(lines, c, e, nrt)  # (n, L, M)
    large = w.reshape(n, -1).min(axis=1) < LARGE_COS
    margin = _sampling_sag(gx, gy, valid) + EPS_RAD
    if ring_xyz is not None:
        qx, qy, _ = _to_plane(ring_xyz, c, e, nrt)
        make = _offset_ring(qx, qy, max_segment, large)
    else:
        make = _kdop(gx, gy, quad, c, e, nrt, k, max_segment, large)
    rx, ry, _ = make(margin, 1)
    dev = _lonlat_sag(rx, ry, c, e, nrt)
    # Stored edges are straight in lon/lat, not great circles (they stray most
    # near the poles): split each chunk's edges (by powers of two) until the
    # stray is below 2% of its area / perimeter (~ its half-width: excess
    # under ~8%), and no edge exceeds `max_segment`; then widen by twice the
    # stray that remains.
    area = np.abs(_signed_area(rx, ry))
    edge = np.hypot(np.roll(rx, -1, 1) - rx, np.roll(ry, -1, 1) - ry)
    target = 0.02 * area / np.maximum(edge.sum(axis=1), 1e-300) + EPS_RAD
    need = np.maximum(np.sqrt(dev / target), edge.max(axis=1) / max_segment)
    refine = 2 ** np.clip(np.ceil(np.log2(np.maximum(need, 1.0))), 0, 7)
    refine[large] = 1
    out = []
    for r in np.unique(refine):
        sel = np.flatnonzero(refine == r)
        sub = _Frame(c[sel], e[sel], nrt[sel])
        rx, ry, _ = make(margin[sel], int(r), sel)
        extra = 2 * _lonlat_sag(rx, ry, *sub)
        rx, ry, inside = make(margin[sel] + extra, int(r), sel)
        lon, lat = xyz_to_lonlat(_from_plane(rx, ry, *sub))
        pole = np.zeros(sel.size, np.int8)
        for sign in (1, -1):
            wz = sign * sub.c[:, 2]
            front = wz > 0
            zx = np.where(front, sign * sub.e[:, 2] / np.where(front, wz, 1), 0)
            zy = np.where(front, sign * sub.nrt[:, 2] / np.where(front, wz, 1), 0)
            pole[front & inside(zx, zy)] = sign
        lon_c, _ = xyz_to_lonlat(sub.c)
        lon = lon_c[:, None] + _wrap(lon - lon_c[:, None])
        big = large[sel]
        if big.any():
            lon[big], lat[big] = _box_ring(lines[sel[big]], pole[big], lon.shape[1])
            pole[big] = 0
        out.append((sel, lon, lat, pole))
    return out


class _Frame(NamedTuple):
    c: np.ndarray
    e: np.ndarray
    nrt: np.ndarray


def _lonlat_sag(rx: np.ndarray, ry: np.ndarray, c: np.ndarray, e: np.ndarray, nrt: np.ndarray) -> np.ndarray:
    """Per chunk, the largest distance (radians) between a ring segment's
    great-circle midpoint and the midpoint of the straight lon/lat segment."""
    lon, lat = xyz_to_lonlat(_from_plane(rx, ry, c, e, nrt))
    mid_x, mid_y = (rx + np.roll(rx, -1, 1)) / 2, (ry + np.roll(ry, -1, 1)) / 2
    mlon, mlat = xyz_to_lonlat(_from_plane(mid_x, mid_y, c, e, nrt))
    chord_lon = lon + _wrap(np.roll(lon, -1, 1) - lon) / 2
    chord_lat = (lat + np.roll(lat, -1, 1)) / 2
    dev = np.hypot(np.radians(_wrap(mlon - chord_lon)) * np.cos(np.radians(mlat)), np.radians(mlat - chord_lat))
    return dev.max(axis=1)


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
    # One (points x 2) @ (2 x k) product per chunk: a single temporary.
    support = np.matmul(np.stack([gx.reshape(n, -1), gy.reshape(n, -1)], axis=2),
                        np.stack([ux, uy], axis=1)).max(axis=1)  # (n, k)
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


def _box_ring(lines: np.ndarray, pole: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A lon/lat box ring around chunks too wide for a tangent plane (rare:
    chunks over ~150 degrees across): all longitudes, latitudes to the pole."""
    _, lat = xyz_to_lonlat(lines.reshape(lines.shape[0], -1, 3))
    south = np.where(pole < 0, -90.0, lat.min(1))
    north = np.where(pole > 0, 90.0, lat.max(1))
    xs = np.array([-180.0, 180.0, 180.0, -180.0])
    rx = np.broadcast_to(xs, (len(pole), 4))
    ry = np.stack([south, south, north, north], axis=1)
    return _pad_ring(rx, width), _pad_ring(ry, width)


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
    import shapely

    ring = np.stack([lon, lat], axis=-1)
    polys = shapely.polygons(np.concatenate([ring, ring[:, :1]], axis=1))
    world = shapely.box(-180.0, -90.0, 180.0, 90.0)
    out = shapely.intersection(polys, world)
    for shift in (360.0, -360.0):
        moved = shapely.transform(polys, lambda xy, s=shift: xy + np.array([s, 0.0]))
        out = shapely.union(out, shapely.intersection(moved, world))
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
