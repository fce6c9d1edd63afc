"""Footprints of an index's chunks: which grid each array lies on, one row
per stored chunk with its WGS84 footprint, written as GeoParquet 1.1,
GeoPackage (R-tree) and FlatGeobuf (packed Hilbert R-tree).

Rows and footprints: every stored chunk of every data array is a row
(`variable`, `level`, `c0`..`c{K-1}`, `path`, `offset`, `length`, as in the
CRI flat index), with the footprint of its *spatial* chunk: chunks that
differ only in time, depth or band share one footprint (one WKB value,
repeated; Parquet stores it once per row group through its dictionary). For
swath granules stacked along time, the footprint is the granule's own.

How an array's grid is found (no source file is opened):

- CF `coordinates` naming latitude/longitude arrays of the index with the
  array's two innermost dimensions: a curvilinear grid (2-D) or stacked
  granules (3-D, outer dimension = the array's outermost);
- the same arrays on tie points (their dimensions are coordinate arrays whose
  values are full-resolution line/pixel indices), with `scan_lines` for a
  scanning swath: a tie-point grid;
- otherwise regular 1-D coordinates of the two innermost dimensions and the
  CRS (`_CRS`, else WGS84 for latitude/longitude): an affine grid.

Geolocation arrays are read through the index itself (their chunk
references, decoded), so footprints come from the index alone.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chunkindex.atomic import commit, staging_path
from chunkindex.codecs import decode_chunk
from chunkindex.geo.footprints import BBOX_TYPE, Footprints, Grid, bbox_column, grid_footprints
from chunkindex.geo.grids import WGS84, AffineGrid, GCPGrid, GeolocatedGrid, TiePointGrid
from chunkindex.geo.query import row_group_ranges
from chunkindex.model import ArraySpec, parse_cf_units

log = logging.getLogger(__name__)

GEOPARQUET_VERSION = "1.1.0"
# Rows per row group of the footprint GeoParquet: few enough row groups that
# a query reads the footer and prunes by their bbox statistics in
# milliseconds at 59 M rows (GHRSST scale), small enough that a box reads
# few rows (bench/footprints.py).
ROW_GROUP_ROWS = 65536
# Min/max statistics only on the columns queries prune row groups by (the
# bbox covering, time, level, variable): those of the other columns made
# a third of the footer, which every query parses whole.
STATISTICS_COLUMNS = ("variable", "level", "time", "bbox.xmin", "bbox.ymin", "bbox.xmax", "bbox.ymax")


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """The `pyarrow.parquet` writer options of a footprint GeoParquet with
    `schema`: zstd, dictionaries, statistics on `STATISTICS_COLUMNS`."""
    names = set(schema.names)
    stats = [c for c in STATISTICS_COLUMNS if c.split(".")[0] in names]
    return {"compression": "zstd", "use_dictionary": True, "write_statistics": stats}


@dataclass
class ArrayGrid:
    """Where an array's pixels lie: the grid of its two innermost dimensions,
    and, for stacked granules, the dimension that stacks them (axis 0)."""

    grid: Grid
    stacked: bool
    description: str


def _by_name(arrays: list[ArraySpec]) -> dict[str, ArraySpec]:
    by_name = {a.name: a for a in arrays}
    # A level's coordinates live in its group (`ovr2/lat_ovr2`): also by their dimension's name.
    for a in arrays:
        if a.inline is not None and len(a.dims) == 1 and a.name.rsplit("/", 1)[-1] == a.dims[0]:
            by_name.setdefault(a.dims[0], a)
    return by_name


def _values(array: ArraySpec) -> np.ndarray:
    """An array's values read through its references (inline or chunk by chunk)."""
    dtype = np.dtype(array.dtype)
    if array.inline is not None:
        return np.frombuffer(array.inline, dtype=dtype).reshape(array.shape)
    out = np.full(array.shape, array.fill_value if array.fill_value is not None else 0, dtype=dtype)
    grid = array.chunk_grid
    handles: dict[int, Any] = {}
    try:
        for number in np.flatnonzero(array.url_index >= 0):
            url = array.urls[array.url_index[number]]
            handle = handles.get(array.url_index[number])
            if handle is None:
                handle = handles[array.url_index[number]] = _open(url)
            handle.seek(int(array.offsets[number]))
            data = handle.read(int(array.sizes[number]))
            block = decode_chunk(array.chain, data, array.dtype, array.chunks)
            index = np.unravel_index(number, grid)
            where = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, array.chunks, array.shape))
            out[where] = block[tuple(slice(0, w.stop - w.start) for w in where)]
    finally:
        for handle in handles.values():
            handle.close()
    return out


def _open(url: str) -> Any:
    if url.startswith(("/", "file://")):
        return open(url.removeprefix("file://"), "rb")
    import fsspec

    return fsspec.open(url, "rb").open()


def _coordinate(array: ArraySpec, dim: str, arrays: dict[str, ArraySpec]) -> ArraySpec | None:
    """The coordinate array of `array`'s dimension `dim`: in the array's own
    group first, then each parent group, then anywhere (arrays grouped by
    grid each have their own `x`/`y`)."""
    parts = array.name.split("/")[:-1]
    for depth in range(len(parts), 0, -1):
        found = arrays.get("/".join(parts[:depth]) + "/" + dim)
        if found is not None:
            return found
    return arrays.get(dim)


def _crs_name(crs: dict[str, Any]) -> str | None:
    if "url" in crs:
        return "EPSG:" + crs["url"].rstrip("/").rsplit("/", 1)[1]
    if "wkt" in crs:
        return crs["wkt"]
    return None


def _crs(array: ArraySpec, y_dim: str, x_dim: str, arrays: dict[str, ArraySpec]) -> str | None:
    named = _crs_name(array.attrs.get("_CRS") or {})
    if named:
        return named
    coords = [_coordinate(array, d, arrays) for d in (y_dim, x_dim)]
    units = [c.attrs.get("units", "") if c is not None else "" for c in coords]
    if units[0].startswith("degree") and units[1].startswith("degree"):
        return WGS84
    return None


def _geolocation_names(array: ArraySpec, arrays: dict[str, ArraySpec]) -> tuple[str, str] | None:
    names = str(array.attrs.get("coordinates", "")).split()
    lat = lon = None
    for name in names:
        other = arrays.get(name)
        if other is None or len(other.shape) < 2:
            continue
        std = other.attrs.get("standard_name", "")
        units = str(other.attrs.get("units", ""))
        if std == "latitude" or units.startswith("degrees_n"):
            lat = name
        elif std == "longitude" or units.startswith("degrees_e"):
            lon = name
    return (lat, lon) if lat and lon else None


def array_grid(array: ArraySpec, arrays: list[ArraySpec] | dict[str, ArraySpec]) -> ArrayGrid | None:
    """The grid of `array`'s two innermost dimensions, or None (with the
    reason logged) when the index does not say where its pixels lie."""
    arrays = arrays if isinstance(arrays, dict) else _by_name(arrays)
    if len(array.dims) < 2:
        return None
    y_dim, x_dim = array.dims[-2], array.dims[-1]
    ny, nx = array.shape[-2], array.shape[-1]
    names = _geolocation_names(array, arrays)
    if names:
        lat_a, lon_a = arrays[names[0]], arrays[names[1]]
        lat, lon = _values(lat_a).astype(np.float64), _values(lon_a).astype(np.float64)
        stacked = lat.ndim == 3
        if stacked and lat.shape[0] != array.shape[0]:
            raise ValueError(f"{array.name}: geolocation {names} stacks {lat.shape[0]} granules, "
                             f"the array {array.shape[0]}")
        scan_lines = int(lat_a.attrs.get("scan_lines", 0) or 0)
        if lat.shape[-2:] == (ny, nx):
            return ArrayGrid(GeolocatedGrid(lon, lat, scan_lines), stacked,
                             f"geolocated by {names[1]}/{names[0]}")
        tie_dims = lat_a.dims[-2:]
        if all(d in arrays and arrays[d].inline is not None for d in tie_dims):
            rows, cols = (_values(arrays[d]).astype(np.int64) for d in tie_dims)
            return ArrayGrid(TiePointGrid(lon, lat, rows, cols, (ny, nx), scan_lines), stacked,
                             f"tie points {names[1]}/{names[0]} on {tie_dims[0]} x {tie_dims[1]}")
        log.warning("%s: geolocation %s is neither per pixel nor on tie-point coordinates", array.name, names)
        return None
    gcps = array.attrs.get("gcps")
    if gcps:
        # A GCP scene: the polynomial GDAL fits, on this level's pixels (an
        # overview's are `overview_factor` full-resolution pixels each).
        factor = float(array.attrs.get("chunkindex", {}).get("overview_factor", 1))
        points = np.array([[g["pixel"] / factor, g["line"] / factor, g["x"], g["y"]] for g in gcps])
        crs = str(array.attrs.get("gcps_crs") or WGS84)
        return ArrayGrid(GCPGrid(points, nx, ny, crs), False, f"{len(gcps)} GCPs in {crs}")
    coords = [_coordinate(array, d, arrays) for d in (y_dim, x_dim)]
    if any(c is None or c.inline is None for c in coords):
        return None
    y, x = (_values(c).astype(np.float64) for c in coords)
    crs = _crs(array, y_dim, x_dim, arrays)
    if crs is None or y.size < 2 or x.size < 2:
        return None
    dy, dx = float(y[1] - y[0]), float(x[1] - x[0])
    if not (np.allclose(np.diff(y), dy, rtol=1e-6, atol=0) and np.allclose(np.diff(x), dx, rtol=1e-6, atol=0)):
        log.warning("%s: coordinates %s/%s are not regular; no footprints", array.name, y_dim, x_dim)
        return None
    gt = (x[0] - dx / 2, dx, 0.0, y[0] - dy / 2, 0.0, dy)
    return ArrayGrid(AffineGrid(gt, nx, ny, crs), False, f"affine in {crs}")


def _level(name: str) -> tuple[str, int]:
    """(variable, overview factor) of an array: `[<group>/]ovr<f>/<v>` (or
    `<v>_ovr<f>`, as indexes written before levels moved to sub-groups name
    them); the variable keeps its group (`EPSG32755_699960_6300040/B04`)."""
    match = re.fullmatch(r"((?:[^/]+/)*?)(?:ovr(\d+)/)?([^/]+?)(?:_ovr(\d+))?", name)
    factor = match.group(2) or match.group(4) if match else None
    return (match.group(1) + match.group(3), int(factor)) if match and factor else (name, 1)


def _time_axis(array: ArraySpec, arrays: dict[str, ArraySpec]) -> tuple[int, np.ndarray] | None:
    """(axis, datetime64[ms] per index) of the array's time dimension, if any."""
    for axis, dim in enumerate(array.dims):
        coord = _coordinate(array, dim, arrays)
        if coord is None or coord.inline is None:
            continue
        units = str(coord.attrs.get("units", ""))
        if " since " in units and (coord.attrs.get("standard_name") == "time" or coord.attrs.get("axis") == "T"
                                   or dim.lower().endswith("time")):
            seconds, epoch = parse_cf_units(units)
            values = _values(coord).astype(np.float64) * seconds
            return axis, np.datetime64(epoch, "ms") + (values * 1000).astype("timedelta64[ms]")
    return None


def index_footprints(arrays: list[ArraySpec], k: int | None = None) -> pa.Table:
    """One row per stored chunk of every data array whose grid is known, with
    its footprint (see the module docstring for columns and row order)."""
    by_name = _by_name(arrays)
    data = [a for a in arrays if a.inline is None and "variant_of" not in a.attrs.get("chunkindex", {})]
    geoloc = {n for a in data for n in (_geolocation_names(a, by_name) or ())}
    data = [a for a in data if a.name not in geoloc]
    k = k or max((len(a.dims) for a in data), default=0)
    # Levels: overview arrays `ovr<f>/<v>` are levels 1..n of `<v>`, coarsest last.
    factors: dict[str, list[int]] = {}
    for a in data:
        base, factor = _level(a.name)
        factors.setdefault(base, []).append(factor)
    tables = []
    for array in data:
        found = array_grid(array, by_name)
        if found is None:
            log.warning("%s: no georeferencing the index can show; no footprints", array.name)
            continue
        base, factor = _level(array.name)
        level = sorted(factors[base]).index(factor)
        tables.append(_array_rows(array, found, base, level, k, by_name))
    if not tables:
        raise ValueError("no array of the index has georeferencing footprints can be computed from")
    table = pa.concat_tables(tables, promote_options="default")
    del tables
    # Combined column by column, each chunked column dropped once copied: the
    # rows exist twice only one column at a time (Table.combine_chunks holds both copies).
    schema, columns = table.schema, []
    for name in schema.names:
        columns.append(table.column(name).combine_chunks())
        table = table.drop_columns([name])
    return pa.Table.from_arrays(columns, schema=schema)


@dataclass
class ChunkFootprints:
    """One array's chunk footprints, looked up by chunk number: the distinct
    spatial footprints are computed once; rows take them by number."""

    array: ArraySpec
    found: ArrayGrid
    prints: Footprints
    spatial: tuple[int, int]

    def columns(self, numbers: np.ndarray) -> tuple[pa.Array, pa.StructArray]:
        """(`geometry` WKB, `bbox` covering) of the chunks `numbers` (C order)."""
        which = _footprint_of_chunk(self.array, self.found, self.spatial, np.asarray(numbers, np.int64))
        return self.prints.wkb.take(pa.array(which)), bbox_column(self.prints.bounds[which])

    @property
    def extent(self) -> np.ndarray:
        """(xmin, ymin, xmax, ymax) of every footprint."""
        b = self.prints.bounds
        return np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])


def chunk_footprints(array: ArraySpec, arrays: list[ArraySpec] | dict[str, ArraySpec]) -> ChunkFootprints | None:
    """The footprints of `array`'s chunks (None when the index does not say
    where its pixels lie)."""
    found = array_grid(array, arrays)
    if found is None:
        return None
    prints, spatial = _spatial(array, found)
    return ChunkFootprints(array, found, prints, spatial)


def footprint_columns(array: ArraySpec, arrays: list[ArraySpec]) -> pa.Table:
    """Footprint columns for every chunk number of `array` in C order
    (`geometry` WKB, `bbox` struct, `native_crs`), for a writer that takes
    the rows it writes (e.g. the CRI flat writer: `table.take(chunk_numbers)`)."""
    lookup = chunk_footprints(array, arrays)
    if lookup is None:
        raise ValueError(f"{array.name}: the index does not say where its pixels lie")
    number = np.arange(array.n_chunks)
    geometry, bbox = lookup.columns(number)
    return pa.table({"geometry": geometry, "bbox": bbox,
                     "native_crs": pa.DictionaryArray.from_arrays(np.zeros(number.size, np.int32),
                                                                  pa.array([lookup.prints.native_crs]))})


def _spatial(array: ArraySpec, found: ArrayGrid) -> tuple[Footprints, tuple[int, int]]:
    chunk_shape = (array.chunks[-2], array.chunks[-1])
    prints = grid_footprints(found.grid, chunk_shape)
    grid = array.chunk_grid
    return prints, (grid[-2], grid[-1])


def _footprint_of_chunk(array: ArraySpec, found: ArrayGrid, spatial: tuple[int, int],
                        number: np.ndarray) -> np.ndarray:
    index = np.unravel_index(number, array.chunk_grid)
    which = index[-2].astype(np.int64) * spatial[1] + index[-1]
    if found.stacked:
        if array.chunks[0] != 1:
            raise ValueError(f"{array.name}: stacked granules need one granule per chunk along "
                             f"{array.dims[0]} (chunk {array.chunks[0]})")
        which = which + index[0].astype(np.int64) * (spatial[0] * spatial[1])
    return which


def _array_rows(array: ArraySpec, found: ArrayGrid, variable: str, level: int, k: int,
                arrays: dict[str, ArraySpec]) -> pa.Table:
    prints, spatial = _spatial(array, found)
    number = np.flatnonzero(array.url_index >= 0)
    which = _footprint_of_chunk(array, found, spatial, number)
    index = np.unravel_index(number, array.chunk_grid)
    columns: dict[str, Any] = {
        "variable": pa.DictionaryArray.from_arrays(np.zeros(number.size, np.int32), pa.array([variable])),
        "level": pa.array(np.full(number.size, level, np.int16)),
    }
    for j in range(k):
        columns[f"c{j}"] = pa.array(index[j].astype(np.int32)) if j < len(index) else pa.nulls(number.size, pa.int32())
    columns["path"] = pa.DictionaryArray.from_arrays(array.url_index[number].astype(np.int32), pa.array(array.urls))
    columns["offset"] = pa.array(array.offsets[number])
    columns["length"] = pa.array(array.sizes[number])
    time = _time_axis(array, arrays)
    if time is not None:
        axis, values = time
        step = index[axis] * array.chunks[axis]
        columns["time"] = pa.array(values[np.minimum(step, values.size - 1)], pa.timestamp("ms"))
    else:
        columns["time"] = pa.nulls(number.size, pa.timestamp("ms"))
    columns["geometry"] = prints.wkb.take(pa.array(which))
    columns["bbox"] = bbox_column(prints.bounds[which])
    for i, name in enumerate(("xmin", "ymin", "xmax", "ymax")):
        columns[f"native_{name}"] = pa.array(prints.native_bounds[which, i])
    columns["native_crs"] = pa.DictionaryArray.from_arrays(np.zeros(number.size, np.int32),
                                                           pa.array([prints.native_crs]))
    return pa.table(columns)


# --- writers ---------------------------------------------------------------------------------

def geo_metadata(table: pa.Table) -> dict[str, Any]:
    """The GeoParquet 1.1 `geo` metadata of a table with `geometry` (WKB,
    WGS84 lon/lat) and its `bbox` covering column."""
    import pyarrow.compute as pc

    bbox = table["bbox"]
    extent = [pc.min(pc.struct_field(bbox, "xmin")).as_py(), pc.min(pc.struct_field(bbox, "ymin")).as_py(),
              pc.max(pc.struct_field(bbox, "xmax")).as_py(), pc.max(pc.struct_field(bbox, "ymax")).as_py()]
    return geoparquet_metadata(extent)


def geoparquet_metadata(extent: list[float | None] | None) -> dict[str, Any]:
    """GeoParquet 1.1 `geo` metadata: `geometry` (WKB, WGS84 lon/lat, planar
    edges) with the `bbox` struct as its covering; `extent` the data's bounds."""
    from pyproj import CRS

    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": ["Polygon", "MultiPolygon"],
        "crs": CRS.from_user_input(WGS84).to_json_dict(),
        "edges": "planar",
    }
    if extent is not None and None not in extent:
        column["bbox"] = list(extent)
    column["covering"] = {"bbox": {c: ["bbox", c] for c in ("xmin", "ymin", "xmax", "ymax")}}
    return {"version": GEOPARQUET_VERSION, "primary_column": "geometry", "columns": {"geometry": column}}


def _staging(path: Path) -> Path:
    # The extension stays last: OGR drivers go by it.
    staging = staging_path(path)
    return staging.with_name(staging.name + path.suffix)


def spatial_order(bounds: np.ndarray) -> np.ndarray:
    """A stable row order that keeps nearby footprints of like size together,
    so that a row group's bbox ranges span a small region: by size class (the
    power of two of the larger bbox side, in degrees), then along a Hilbert
    curve through the bbox centres on a 1024 x 1024 lon/lat grid.

    Size first: a coarse overview tile (160 degrees wide) among fine ones
    would widen their row group's bbox to half the globe, and every query
    would read it. Hilbert, not Morton: the Z curve's jumps put distant
    footprints in one row group. Footprints wider than 180 degrees (split at
    the antimeridian: their bbox covering spans every longitude; polar caps)
    go last, by latitude, so that their row groups still prune on y.

    Example:
        >>> spatial_order(np.array([[170.0, 0, 171, 1], [-180, -5, 180, 5], [-10, 0, -9, 1], [10, 0, 11, 1],
        ...                         [0, 0, 40, 40], [-180, 80, 180, 90]]))
        array([2, 3, 0, 4, 1, 5])
    """
    cx = (bounds[:, 0] + bounds[:, 2]) / 2
    cy = (bounds[:, 1] + bounds[:, 3]) / 2
    qx = np.clip((cx + 180.0) / 360.0 * 1024, 0, 1023).astype(np.int64)
    qy = np.clip((cy + 90.0) / 180.0 * 1024, 0, 1023).astype(np.int64)
    key = _hilbert(qx, qy, 10)
    wide = (bounds[:, 2] - bounds[:, 0]) > 180.0
    key[wide] = qy[wide]
    side = np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
    # Classes 0 (<= 1 degree) .. 9 (< 512), then the wide ones: above the 20-bit curve index.
    size = np.clip(np.ceil(np.log2(np.fmax(side, 1.0))), 0, 9).astype(np.int64)
    size[wide] = 10
    return np.argsort(key | (size << 20), kind="stable")


def _hilbert(x: np.ndarray, y: np.ndarray, order: int) -> np.ndarray:
    """Index along the Hilbert curve of cells (x, y) of a 2**order grid
    (the classic xy2d, vectorised)."""
    n = 1 << order
    x, y = x.astype(np.int64).copy(), y.astype(np.int64).copy()
    d = np.zeros(x.shape, np.int64)
    s = n // 2
    while s:
        rx, ry = (x & s) > 0, (y & s) > 0
        d += s * s * ((3 * rx.astype(np.int64)) ^ ry.astype(np.int64))
        flip = ~ry & rx
        x, y = np.where(flip, n - 1 - x, x), np.where(flip, n - 1 - y, y)
        x, y = np.where(~ry, y, x), np.where(~ry, x, y)
        s //= 2
    return d


def write_geoparquet(table: pa.Table, path: str | Path, row_group_rows: int | None = None) -> None:
    """Write `table` as GeoParquet 1.1 (under a temporary name, then renamed),
    its rows in `spatial_order` (time, depth and band steps of one spatial
    chunk side by side), in row groups of `row_group_rows`: a query's bbox
    statistics keep the few row groups of its region, whatever the time span
    (`chunkindex query` then filters time on those rows), their ranges in
    the footer (`chunkindex.geo.query.row_group_ranges`). Default
    `ROW_GROUP_ROWS`."""
    path = Path(path)
    row_group_rows = row_group_rows or ROW_GROUP_ROWS
    bbox = table["bbox"].combine_chunks()
    bounds = np.stack([bbox.field(c).to_numpy(zero_copy_only=False) for c in ("xmin", "ymin", "xmax", "ymax")],
                      axis=1) if table.num_rows else np.zeros((0, 4))
    order = spatial_order(bounds)
    del bounds, bbox
    tmp = _staging(path)
    meta = dict(table.schema.metadata or {})
    meta[b"geo"] = json.dumps(geo_metadata(table)).encode()
    # The ranges of the row groups as written: from the few columns they need, taken in spatial order.
    ranged = [c for c in ("bbox", "level", "time") if c in table.column_names]
    meta.update(row_group_ranges(table.select(ranged).take(pa.array(order)), row_group_rows))
    # Plain string columns (still dictionary-encoded on disk): OGR maps Arrow
    # dictionaries to coded domains, which its attribute filters cannot compare.
    schema = pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                        for f in table.schema]).with_metadata(meta)
    try:
        # One row group at a time (taken in spatial order, dictionaries decoded):
        # never a second copy of the whole table.
        with pq.ParquetWriter(tmp, schema, **parquet_options(schema)) as writer:
            for start in range(0, max(len(order), 1), row_group_rows):
                writer.write_table(_plain(table.take(pa.array(order[start:start + row_group_rows])), schema),
                                   row_group_size=row_group_rows)
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _plain(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with its dictionary columns decoded, as `schema`."""
    return pa.Table.from_arrays([col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col
                                 for col in table.columns], schema=schema)


def _ogr_table(table: pa.Table) -> pa.Table:
    """Plain columns OGR's WriteArrow takes: dictionaries decoded, no struct,
    the geometry marked as geoarrow.wkb."""
    columns, fields = [], []
    for field, column in zip(table.schema, table.columns):
        if pa.types.is_struct(field.type):
            continue
        if pa.types.is_dictionary(field.type):
            column = column.cast(field.type.value_type)
        meta = {b"ARROW:extension:name": b"geoarrow.wkb"} if field.name == "geometry" else None
        fields.append(pa.field(field.name, column.type, metadata=meta))
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def write_ogr(table: pa.Table, path: str | Path, driver: str, layer: str = "chunk_footprints",
              options: list[str] | None = None) -> None:
    """Write the footprint rows with GDAL/OGR (`GPKG`: R-tree; `FlatGeobuf`:
    packed Hilbert R-tree), through Arrow in one call, atomically."""
    from osgeo import gdal, ogr, osr

    gdal.UseExceptions()
    path = Path(path)
    tmp = _staging(path)
    tmp.unlink(missing_ok=True)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ds = None
    try:
        ds = ogr.GetDriverByName(driver).CreateDataSource(str(tmp))
        # Polygons and MultiPolygons (antimeridian) side by side: a generic geometry type.
        lyr = ds.CreateLayer(layer, srs, ogr.wkbUnknown, options=options or ["SPATIAL_INDEX=YES"])
        for field in _ogr_table(table.slice(0, 0)).schema:
            if field.name != "geometry":
                lyr.CreateFieldFromPyArrowSchema(field)
        # Decoded batch by batch: the plain string columns of every row never exist at once.
        for batch in table.to_batches(max_chunksize=65536):
            for plain in _ogr_table(pa.Table.from_batches([batch])).to_batches():
                lyr.WritePyArrow(plain, options=["GEOMETRY_NAME=geometry", "IF_FIELD_NOT_PRESERVED=ERROR"])
        ds.Close()
        ds = None
        commit(tmp, path)
    finally:
        if ds is not None:
            ds = None  # closes (and flushes) before the partial file goes
        tmp.unlink(missing_ok=True)


def write_footprints(arrays: list[ArraySpec], parquet_path: str | Path, gpkg_path: str | Path | None = None,
                     fgb_path: str | Path | None = None) -> int:
    """Footprints of every chunk as GeoParquet (+ GeoPackage, FlatGeobuf); returns the row count."""
    table = index_footprints(arrays)
    write_geoparquet(table, parquet_path)
    if gpkg_path:
        write_ogr(table, gpkg_path, "GPKG")
    if fgb_path:
        write_ogr(table, fgb_path, "FlatGeobuf")
    return table.num_rows


__all__ = ["BBOX_TYPE", "ArrayGrid", "array_grid", "footprint_columns", "geo_metadata", "index_footprints",
           "write_footprints", "write_geoparquet", "write_ogr"]
