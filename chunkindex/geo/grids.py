"""Georeferenced grids: where each pixel of a 2-D raster lies on the Earth.

Four kinds, all plain dataclasses over numpy arrays:

- `AffineGrid`: a GDAL geotransform in any CRS (north-up, south-up, rotated);
- `GCPGrid`: ground control points, fitted by a least-squares polynomial in
  pixel coordinates (as GDAL's GCP transformer does for orders 1-3);
- `GeolocatedGrid`: 2-D longitude/latitude of pixel centres (curvilinear ocean
  model grids, per-pixel swath geolocation), optionally in scans of
  `scan_lines` rows that overlap (the MODIS/VIIRS bowtie);
- `TiePointGrid`: longitude/latitude given on a subset of rows and columns
  (tie points), interpolated to every pixel (within each scan for swaths).

Pixel corners are the footprint's ground truth: for mapped grids they are
exact; for geolocated grids they are defined on the sphere from the centres
(mid-points of neighbouring centres, extrapolated by half a pixel at the
edges, separately in every scan so that overlapping scans keep their own
corners).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

WGS84 = "OGC:CRS84"


def lonlat_to_xyz(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 3) of longitudes/latitudes in degrees."""
    lon_r, lat_r = np.radians(lon), np.radians(lat)
    cos_lat = np.cos(lat_r)
    return np.stack([cos_lat * np.cos(lon_r), cos_lat * np.sin(lon_r), np.sin(lat_r)], axis=-1)


def xyz_to_lonlat(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitudes (-180..180] and latitudes in degrees of vectors (..., 3), any length."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    lon = np.degrees(np.arctan2(y, x))
    lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    return lon, lat


def _normalise(xyz: np.ndarray) -> np.ndarray:
    return xyz / np.sqrt(np.einsum("...i,...i->...", xyz, xyz))[..., None]


@dataclass(frozen=True)
class AffineGrid:
    """A raster placed by a GDAL geotransform `[x0, dx, rx, y0, ry, dy]`
    (pixel-corner convention) in `crs` (anything pyproj accepts)."""

    geotransform: tuple[float, float, float, float, float, float]
    width: int
    height: int
    crs: str = WGS84

    def __post_init__(self) -> None:
        gt = self.geotransform
        if len(gt) != 6 or gt[1] * gt[5] - gt[2] * gt[4] == 0:
            raise ValueError(f"geotransform {gt!r} is not an invertible affine transform")

    def pixel_to_crs(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CRS coordinates of fractional pixel positions (corner convention)."""
        x0, dx, rx, y0, ry, dy = self.geotransform
        return x0 + col * dx + row * rx, y0 + col * ry + row * dy


@dataclass(frozen=True)
class GCPGrid:
    """A raster placed by ground control points `(col, row, x, y)` in `crs`,
    through a polynomial of `order` 1-3 fitted by least squares (order 0 =
    the largest the GCP count allows, as GDAL chooses)."""

    gcps: np.ndarray
    width: int
    height: int
    crs: str = WGS84
    order: int = 0
    _coefficients: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        gcps = np.asarray(self.gcps, dtype=np.float64)
        if gcps.ndim != 2 or gcps.shape[1] != 4:
            raise ValueError(f"GCPs must be an (n, 4) array of col, row, x, y; got shape {gcps.shape}")
        order = self.order or (3 if len(gcps) >= 10 else 2 if len(gcps) >= 6 else 1)
        needed = (order + 1) * (order + 2) // 2
        if len(gcps) < needed:
            raise ValueError(f"{len(gcps)} GCPs cannot fit a polynomial of order {order} "
                             f"(needs at least {needed})")
        terms = self._terms(gcps[:, 0], gcps[:, 1], order)
        coefficients, *_ = np.linalg.lstsq(terms, gcps[:, 2:], rcond=None)
        object.__setattr__(self, "gcps", gcps)
        object.__setattr__(self, "order", order)
        object.__setattr__(self, "_coefficients", coefficients)

    def _terms(self, col: np.ndarray, row: np.ndarray, order: int) -> np.ndarray:
        # Pixel coordinates scaled to about [0, 1] keep the normal equations well conditioned.
        u, v = col / max(self.width, 1), row / max(self.height, 1)
        return np.stack([u ** (i - j) * v ** j for i in range(order + 1) for j in range(i + 1)], axis=-1)

    def pixel_to_crs(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CRS coordinates of fractional pixel positions from the fitted polynomial."""
        col, row = np.broadcast_arrays(np.asarray(col, np.float64), np.asarray(row, np.float64))
        xy = self._terms(col, row, self.order) @ self._coefficients
        return xy[..., 0], xy[..., 1]

    def residuals(self) -> np.ndarray:
        """Distance (CRS units) between each GCP and the fitted polynomial."""
        x, y = self.pixel_to_crs(self.gcps[:, 0], self.gcps[:, 1])
        return np.hypot(x - self.gcps[:, 2], y - self.gcps[:, 3])


@dataclass(frozen=True)
class GeolocatedGrid:
    """Longitude/latitude (degrees) of every pixel centre, shape (rows, cols),
    or (granules, rows, cols) for a stack of granules of one shape (their
    footprints are computed in one go).

    `scan_lines` > 0 marks a scanning swath: rows come in scans of that many
    lines whose ground footprints overlap (bowtie); corners are then computed
    within each scan.
    """

    lon: np.ndarray
    lat: np.ndarray
    scan_lines: int = 0

    def __post_init__(self) -> None:
        lon, lat = np.asarray(self.lon, np.float64), np.asarray(self.lat, np.float64)
        if lon.shape != lat.shape or lon.ndim not in (2, 3) or min(lon.shape[-2:]) < 2:
            raise ValueError(f"longitude {lon.shape} and latitude {lat.shape} must be equal 2-D (or stacked "
                             "3-D) shapes of at least 2 x 2")
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
            raise ValueError("geolocation holds non-finite values (fill values must be masked out "
                             "or interpolated before computing footprints)")
        if np.abs(lat).max() > 90:
            raise ValueError(f"latitude out of range: {np.abs(lat).max()} (are longitude and latitude swapped?)")
        if self.scan_lines and (self.scan_lines < 2 or lon.shape[-2] % self.scan_lines):
            raise ValueError(f"{lon.shape[-2]} rows are not whole scans of {self.scan_lines} lines")
        object.__setattr__(self, "lon", lon)
        object.__setattr__(self, "lat", lat)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of one granule."""
        return self.lon.shape[-2:]  # type: ignore[return-value]

    @property
    def granules(self) -> int:
        return self.lon.shape[0] if self.lon.ndim == 3 else 1

    @property
    def block_rows(self) -> int:
        """Rows per independent block: a scan, or the whole grid."""
        return self.scan_lines or self.shape[0]

    def centre_xyz(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Unit vectors of the pixel centres at integer `rows` (granule * rows + row), `cols`."""
        flat = (self.granules * self.shape[0], self.shape[1])
        return lonlat_to_xyz(self.lon.reshape(flat)[rows, cols], self.lat.reshape(flat)[rows, cols])

    def corner_xyz(self, block: np.ndarray, local_row: np.ndarray, col: np.ndarray) -> np.ndarray:
        """Unit vectors of the corners (block, corner row in block, corner column),
        equal to `corners_xyz()[block, local_row, col]` without computing them all."""
        return corner_from_centres(self.centre_xyz, self.block_rows, self.shape[1], block, local_row, col)

    def corners_xyz(self) -> np.ndarray:
        """Pixel corners as unit vectors, shape (blocks, block_rows + 1, cols + 1, 3):
        block b's corner row k is the top edge of its row k (k = block_rows: the
        bottom edge of its last row)."""
        rows, cols = self.shape
        rows *= self.granules
        b = self.block_rows
        centres = lonlat_to_xyz(self.lon, self.lat).reshape(rows // b, b, cols, 3)
        # Extrapolate half a pixel past every edge of each block, then average
        # the four centres around each corner (on the sphere: normalised).
        padded = np.empty((rows // b, b + 2, cols + 2, 3))
        padded[:, 1:-1, 1:-1] = centres
        padded[:, 0, 1:-1] = 2 * centres[:, 0] - centres[:, 1]
        padded[:, -1, 1:-1] = 2 * centres[:, -1] - centres[:, -2]
        padded[:, :, 0] = 2 * padded[:, :, 1] - padded[:, :, 2]
        padded[:, :, -1] = 2 * padded[:, :, -2] - padded[:, :, -3]
        corners = padded[:, :-1, :-1] + padded[:, 1:, :-1] + padded[:, :-1, 1:] + padded[:, 1:, 1:]
        return _normalise(corners)

    def pixel_corners(self) -> tuple[np.ndarray, np.ndarray]:
        """Longitude/latitude of the four corners of every pixel, shape (rows, cols, 4)."""
        rows, cols = self.shape
        rows *= self.granules
        c = self.corners_xyz()
        quad = np.stack([c[:, :-1, :-1], c[:, :-1, 1:], c[:, 1:, 1:], c[:, 1:, :-1]], axis=3)
        return xyz_to_lonlat(quad.reshape(rows, cols, 4, 3))


@dataclass(frozen=True)
class TiePointGrid:
    """Longitude/latitude at tie points: rows `tie_rows` and columns
    `tie_cols` (increasing full-resolution indices) of a `shape` grid; the
    arrays may be stacked (granules, tie rows, tie cols) for many granules.

    Values are interpolated bilinearly on the sphere (in 3-D, so across the
    antimeridian and near the poles), and extrapolated linearly past the
    outermost tie points. With `scan_lines`, each scan has its own tie rows
    (at least two per scan) and is interpolated on its own (bowtie scans do
    not blend into each other).
    """

    lon: np.ndarray
    lat: np.ndarray
    tie_rows: np.ndarray
    tie_cols: np.ndarray
    shape: tuple[int, int]
    scan_lines: int = 0
    _tie_xyz: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tr, tc = np.asarray(self.tie_rows, np.float64), np.asarray(self.tie_cols, np.float64)
        lon = np.asarray(self.lon, np.float64)
        if lon.shape[-2:] != (tr.size, tc.size) or np.shape(self.lat) != lon.shape or lon.ndim not in (2, 3):
            raise ValueError(f"tie-point arrays {lon.shape}/{np.shape(self.lat)} do not match "
                             f"{tr.size} tie rows x {tc.size} tie columns")
        if (np.diff(tc) <= 0).any() or (np.diff(tr) <= 0).any():
            raise ValueError("tie rows and columns must be strictly increasing")
        if self.scan_lines:
            scans = self.shape[0] // self.scan_lines
            if self.shape[0] % self.scan_lines or tr.size % scans or tr.size // scans < 2:
                raise ValueError(f"{tr.size} tie rows are not at least two per scan of "
                                 f"{self.scan_lines} lines in {self.shape[0]} rows")
            local = tr.reshape(scans, -1) - (np.arange(scans) * self.scan_lines)[:, None]
            if (local != local[0]).any():
                raise ValueError("tie rows must sit at the same lines of every scan")
        tie = lonlat_to_xyz(lon, np.asarray(self.lat, np.float64))
        object.__setattr__(self, "_tie_xyz", tie.reshape(-1, tc.size, 3))

    @property
    def block_rows(self) -> int:
        return self.scan_lines or self.shape[0]

    @property
    def granules(self) -> int:
        return np.shape(self.lon)[0] if np.ndim(self.lon) == 3 else 1

    def centre_xyz(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Interpolated pixel-centre unit vectors at integer `rows` (granule * rows + row), `cols`."""
        n_tie = len(self.tie_rows)
        tie = self._tie_xyz
        granule, rows = np.divmod(rows, self.shape[0])
        tc = np.asarray(self.tie_cols, np.float64)
        j, wc = _bracket(tc, cols)
        tr = np.asarray(self.tie_rows, np.float64)
        if self.scan_lines:
            per = tr.size // (self.shape[0] // self.scan_lines)
            local_ties = tr[:per]
            scan, local = np.divmod(rows, self.scan_lines)
            i, wr = _bracket(local_ties, local)
            i = i + scan * per
        else:
            i, wr = _bracket(tr, rows)
        i = i + granule * n_tie
        wr, wc = wr[..., None], wc[..., None]
        top = tie[i, j] * (1 - wc) + tie[i, j + 1] * wc
        bottom = tie[i + 1, j] * (1 - wc) + tie[i + 1, j + 1] * wc
        return _normalise(top * (1 - wr) + bottom * wr)

    def corner_xyz(self, block: np.ndarray, local_row: np.ndarray, col: np.ndarray) -> np.ndarray:
        """Corner vectors, as those of `expand()` (without expanding).

        The four centres around a corner are bilinear in the tie points, so
        their mean is the bilinear value half a pixel up and left (past a
        block's edge, the linear extrapolation `expand()` does): one
        interpolation per corner instead of four. It differs from the mean of
        the normalised centres only where the four straddle a tie point or by
        the centres' normalisation: at most 3 cm on the ground on the MODIS-like
        day (1 km pixels; `test_tie_point_corners_match_expand`), well inside
        the enclosure's sampling margin."""
        block, local_row, col = np.broadcast_arrays(block, local_row, col)
        n_tie = len(self.tie_rows)
        tie = self._tie_xyz
        tr = np.asarray(self.tie_rows, np.float64)
        granule, first = np.divmod(block * self.block_rows, self.shape[0])
        # Corner rows and columns are small integers: bracket each possible
        # one once and look the many corners up.
        if self.scan_lines:
            per = tr.size // (self.shape[0] // self.scan_lines)
            i_of, wr_of = _bracket(tr[:per], np.arange(self.scan_lines + 1) - 0.5)
            i, wr = i_of[local_row] + (first // self.scan_lines) * per, wr_of[local_row]
        else:
            i_of, wr_of = _bracket(tr, np.arange(self.shape[0] + 1) - 0.5)
            i, wr = i_of[first + local_row], wr_of[first + local_row]
        i = i + granule * n_tie
        j_of, wc_of = _bracket(np.asarray(self.tie_cols, np.float64), np.arange(self.shape[1] + 1) - 0.5)
        j, wc = j_of[col], wc_of[col]
        wr, wc = wr[..., None], wc[..., None]
        top = tie[i, j] * (1 - wc) + tie[i, j + 1] * wc
        bottom = tie[i + 1, j] * (1 - wc) + tie[i + 1, j + 1] * wc
        return _normalise(top * (1 - wr) + bottom * wr)

    def _row_brackets(self, block: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first tie row index in the flat tie arrays, weight) of fractional
        local rows `y` of blocks `block` (extrapolated past the outer ties)."""
        tr = np.asarray(self.tie_rows, np.float64)
        granule, first = np.divmod(block * self.block_rows, self.shape[0])
        if self.scan_lines:
            per = tr.size // (self.shape[0] // self.scan_lines)
            i, wr = _bracket(tr[:per], y)
            i = i + (first // self.scan_lines) * per
        else:
            i, wr = _bracket(tr, first + y)
        return i + granule * len(self.tie_rows), wr

    def bilinear_xyz(self, block: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The interpolated surface (3-D, not normalised) at fractional local
        rows `y` of `block` and fractional columns `x` (corner of pixel (r, c):
        y = r - 0.5, x = c - 0.5), broadcast together."""
        block, y, x = np.broadcast_arrays(block, y, x)
        i, wr = self._row_brackets(block, y)
        j, wc = _bracket(np.asarray(self.tie_cols, np.float64), x)
        tie = self._tie_xyz
        flat = tie.reshape(-1, 3)  # one-axis takes: far cheaper than multi-axis fancy indexing
        at = i * tie.shape[1] + j
        wr, wc = wr[..., None], wc[..., None]
        top = flat.take(at, axis=0) * (1 - wc) + flat.take(at + 1, axis=0) * wc
        at += tie.shape[1]
        bottom = flat.take(at, axis=0) * (1 - wc) + flat.take(at + 1, axis=0) * wc
        return top * (1 - wr) + bottom * wr

    def edge_columns_xyz(self, block: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """`bilinear_xyz` at rows (block, y) (broadcast, shape S) and columns
        `x` (shape (S[0], C): a few distinct values), shape S + (C, 3): every
        tie row is interpolated once at the distinct columns, then each point
        from two of those."""
        block, y = np.broadcast_arrays(block, y)
        unique, which = np.unique(x, return_inverse=True)
        which = which.reshape(x.shape)
        j, wc = _bracket(np.asarray(self.tie_cols, np.float64), unique)
        tie = self._tie_xyz
        columns = (tie[:, j] * (1 - wc)[:, None] + tie[:, j + 1] * wc[:, None]).reshape(-1, 3)
        i, wr = self._row_brackets(block, y)
        col = which.reshape(which.shape[:1] + (1,) * (y.ndim - 1) + which.shape[1:])
        at = i[..., None] * unique.size + col
        wr = wr[..., None, None]
        return columns.take(at, axis=0) * (1 - wr) + columns.take(at + unique.size, axis=0) * wr

    def block_rows_xyz(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """`bilinear_xyz` at the same local rows `y` (R,) of every block and
        columns `x` (U,), shape (blocks, R, U, 3): in a scanning swath every
        scan has its tie rows at the same lines, so one bracket serves all."""
        tie = self._tie_xyz
        j, wc = _bracket(np.asarray(self.tie_cols, np.float64), np.asarray(x, np.float64))
        # take() along one axis and in-place products: the same arithmetic as
        # a * (1 - w) + b * w, at a third of the time of fancy indexing.
        columns = tie.take(j, axis=1)  # (tie rows, U, 3)
        columns *= (1 - wc)[:, None]
        right = tie.take(j + 1, axis=1)
        right *= wc[:, None]
        columns += right
        tr = np.asarray(self.tie_rows, np.float64)
        blocks = self.granules * (self.shape[0] // self.block_rows)
        per = tr.size // (self.shape[0] // self.block_rows)
        columns = columns.reshape(blocks, per, len(j), 3)
        i, wr = _bracket(tr[:per], np.asarray(y, np.float64))
        out = columns.take(i, axis=1)
        out *= (1 - wr)[None, :, None, None]
        below = columns.take(i + 1, axis=1)
        below *= wr[None, :, None, None]
        out += below
        return out

    def expand(self) -> GeolocatedGrid:
        """The full-resolution geolocation (a `GeolocatedGrid`) of an unstacked grid."""
        if self.granules > 1:
            raise ValueError("expand() takes one granule: index the stacked arrays first")
        rows, cols = self.shape
        xyz = lonlat_to_xyz(np.asarray(self.lon, np.float64), np.asarray(self.lat, np.float64))
        tc = np.asarray(self.tie_cols, np.float64)
        tr = np.asarray(self.tie_rows, np.float64)
        along_cols = _interp_axis(xyz, tc, np.arange(cols, dtype=np.float64), axis=1)
        if self.scan_lines:
            scans = rows // self.scan_lines
            per = tr.size // scans
            blocks = along_cols.reshape(scans, per, cols, 3)
            local = np.arange(self.scan_lines, dtype=np.float64)
            tie_local = tr.reshape(scans, per) - (np.arange(scans) * self.scan_lines)[:, None]
            if (tie_local != tie_local[0]).any():
                raise ValueError("tie rows must sit at the same lines of every scan")
            full = _interp_axis(blocks, tie_local[0], local, axis=1).reshape(rows, cols, 3)
        else:
            full = _interp_axis(along_cols, tr, np.arange(rows, dtype=np.float64), axis=0)
        lon, lat = xyz_to_lonlat(full)
        return GeolocatedGrid(lon, lat, self.scan_lines)


def _bracket(at: np.ndarray, to: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the interval of `at` holding each `to` (the end ones extrapolate) and the weight."""
    i = np.clip(np.searchsorted(at, to, side="right") - 1, 0, at.size - 2)
    return i, (to - at[i]) / (at[i + 1] - at[i])


def corner_from_centres(centres: Callable[[np.ndarray, np.ndarray], np.ndarray], block_rows: int, cols: int,
                        block: np.ndarray,
                        local_row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Corner vectors from the four pixel centres around each, the centres
    past a block's edge extrapolated linearly (as `GeolocatedGrid.corners_xyz`).

    `centres(rows, cols)` gives centre vectors at integer positions."""
    total = np.zeros(np.broadcast_shapes(np.shape(block), np.shape(local_row), np.shape(col)) + (3,))
    block, local_row, col = np.broadcast_arrays(block, local_row, col)
    base = block * block_rows
    for dr in (-1, 0):
        ra, rb, wra, wrb = _edge_weights(local_row + dr, block_rows)
        for dc in (-1, 0):
            ca, cb, wca, wcb = _edge_weights(col + dc, cols)
            total += (wra * wca)[..., None] * centres(base + ra, ca)
            # Extrapolation terms exist only past a block's edge: gather those alone.
            for w, r, c in ((wra * wcb, ra, cb), (wrb * wca, rb, ca), (wrb * wcb, rb, cb)):
                edge = w != 0
                if edge.any():
                    total[edge] += w[edge][:, None] * centres(base[edge] + r[edge], c[edge])
    return _normalise(total)


def _edge_weights(i: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """Index i in -1..size as a combination of two in-range indices: -1 -> 2x[0] - x[1]."""
    before, after = i < 0, i >= size
    out = before | after
    a = np.clip(i, 0, size - 1)
    b = np.where(before, 1, np.where(after, size - 2, a))
    return a, b, np.where(out, 2.0, 1.0), np.where(out, -1.0, 0.0)


def _interp_axis(values: np.ndarray, at: np.ndarray, to: np.ndarray, axis: int) -> np.ndarray:
    """Piecewise-linear interpolation (linear extrapolation at the ends) of
    `values` known at positions `at` along `axis`, evaluated at `to`."""
    i = np.clip(np.searchsorted(at, to, side="right") - 1, 0, at.size - 2)
    w = (to - at[i]) / (at[i + 1] - at[i])
    lo, hi = np.take(values, i, axis=axis), np.take(values, i + 1, axis=axis)
    shape = [1] * values.ndim
    shape[axis] = to.size
    w = w.reshape(shape)
    return lo + (hi - lo) * w
