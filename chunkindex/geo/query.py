"""Spatial and time queries on a footprint index (GeoParquet with `geometry`
and `bbox` columns): the chunks whose footprint intersects a box.

Two stages: the row groups' ranges of the `bbox` covering columns, `level`
and `time` (the footer's `RANGES_KEY`, else the Parquet statistics) prune
row groups, then the `bbox` and filter columns of the rest prune rows,
without decoding a geometry; the candidates' WKB footprints are then tested
exactly (shapely). Arrow arrays become numpy through their buffers, not
`to_numpy` (which imports pandas: longer than a query, in a `chunkindex
query` process).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from chunkindex.geo.grids import WGS84

REF_COLUMNS = ("variable", "level", "path", "offset", "length", "time")


@dataclass(frozen=True)
class Query:
    """A query: `bbox` (minx, miny, maxx, maxy) in `crs`; optional time range
    [start, end], variable (`V` also matches `<grid>/V` in archives grouped
    by grid) and level. In longitude/latitude, minx > maxx is a
    box across the antimeridian."""

    bbox: tuple[float, float, float, float]
    crs: str = WGS84
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    variable: str | None = None
    level: int | None = None


def parse_time_range(text: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """'START/END' (ISO dates or times; either side may be empty) to datetimes."""
    if "/" not in text:
        raise ValueError(f"--time {text!r}: expected START/END (ISO 8601, either side may be empty)")
    start, end = (s.strip() for s in text.split("/", 1))
    try:
        return (dt.datetime.fromisoformat(start) if start else None, dt.datetime.fromisoformat(end) if end else None)
    except ValueError as exc:
        raise ValueError(f"--time {text!r}: {exc}") from None


_LON_LAT_NAMES = {WGS84.upper(), "OGC:CRS84", "EPSG:4326", "WGS84", "CRS84"}


def query_geometry(bbox: tuple[float, float, float, float], crs: str = WGS84):
    """The query box as a WGS84 (Multi)Polygon: edges densified and
    transformed from `crs`; a lon/lat box with minx > maxx wraps the antimeridian."""
    import shapely

    minx, miny, maxx, maxy = (float(v) for v in bbox)
    if miny > maxy:
        raise ValueError(f"bbox {bbox}: miny > maxy")
    # WGS84 by name without pyproj: importing it is 50 ms of a `chunkindex query` process.
    if str(crs).upper() in _LON_LAT_NAMES:
        geographic = True
    else:
        from pyproj import CRS

        source = CRS.from_user_input(crs)
        geographic = source.is_geographic
    if geographic:
        if minx > maxx:  # across the antimeridian
            return shapely.MultiPolygon([shapely.box(minx, miny, 180.0, maxy), shapely.box(-180.0, miny, maxx, maxy)])
        return shapely.box(minx, miny, maxx, maxy)
    if minx > maxx:
        raise ValueError(f"bbox {bbox}: minx > maxx")
    from pyproj import Transformer

    t = np.linspace(0.0, 1.0, 65)
    xs = np.concatenate([minx + (maxx - minx) * t, np.full(65, maxx), maxx - (maxx - minx) * t, np.full(65, minx)])
    ys = np.concatenate([np.full(65, miny), miny + (maxy - miny) * t, np.full(65, maxy), maxy - (maxy - miny) * t])
    lon, lat = Transformer.from_crs(source, WGS84, always_xy=True).transform(xs, ys)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise ValueError(f"bbox {bbox} in {crs} cannot be transformed to WGS84")
    lon = np.degrees(np.unwrap(np.radians(lon)))  # continuous across the antimeridian
    ring = shapely.polygons(np.stack([lon, lat], axis=1))
    world = shapely.box(-180.0, -90.0, 180.0, 90.0)
    parts = [shapely.intersection(shapely.transform(ring, lambda c, s=s: c + np.array([s, 0.0])), world)
             for s in (-360.0, 0.0, 360.0)]
    return shapely.union_all([p for p in parts if not p.is_empty])


# Key of the footer metadata holding, per row group, the ranges queries prune
# by (written by `write_geoparquet`): one numpy comparison over all row
# groups, where reading the Parquet statistics through pyarrow costs about
# a microsecond a value (5,000 values, as long as parsing the footer, at
# 908 row groups).
RANGES_KEY = b"chunkindex:row_group_ranges"
_RANGE_FIELDS = ("xmin", "ymin", "xmax", "ymax", "level_min", "level_max")


def row_group_ranges(table: pa.Table, row_group_rows: int) -> dict[bytes, bytes]:
    """The footer metadata (`RANGES_KEY`) of `table` written in row groups
    of `row_group_rows`: per row group the bbox envelope, the level range and
    the time range (int64 in the time column's unit), nulls left out.

    Example:
        >>> from chunkindex.geo.footprints import bbox_column
        >>> t = pa.table({"level": pa.array([0, 1, 2], pa.int16()),
        ...               "bbox": bbox_column(np.array([[0.0, 0, 1, 1], [5, 5, 6, 6], [-3, 2, -2, 3]]))})
        >>> json.loads(row_group_ranges(t, 2)[RANGES_KEY])["rows"]
        [2, 1]
    """
    n = table.num_rows
    starts = np.arange(0, n, row_group_rows)
    rows = np.diff(np.append(starts, n))
    ranges = np.full((starts.size, len(_RANGE_FIELDS)), np.nan)
    ranges[:, 4:6] = -np.inf, np.inf  # no level column: no level pruning
    if n:
        bbox = table["bbox"].combine_chunks()
        for j, name in enumerate(("xmin", "ymin", "xmax", "ymax")):
            values = bbox.field(name).to_numpy(zero_copy_only=False).astype(np.float64)
            # fmin/fmax skip NaN (nulls): rows no box can meet.
            ranges[:, j] = (np.fmin if j < 2 else np.fmax).reduceat(values, starts)
        if "level" in table.column_names:
            level = table["level"].combine_chunks().cast(pa.float64()).to_numpy(zero_copy_only=False)
            ranges[:, 4] = np.fmin.reduceat(level, starts)
            ranges[:, 5] = np.fmax.reduceat(level, starts)
    doc = {"fields": list(_RANGE_FIELDS), "rows": rows.tolist(),
           "ranges": base64.b64encode(ranges.astype("<f8").tobytes()).decode()}
    if "time" in table.column_names and n:
        t = table["time"].combine_chunks().cast(pa.int64())
        big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
        low = np.minimum.reduceat(pc.fill_null(t, big).to_numpy(), starts)
        high = np.maximum.reduceat(pc.fill_null(t, small).to_numpy(), starts)
        doc["time"] = base64.b64encode(np.stack([low, high], axis=1).astype("<i8").tobytes()).decode()
    return {RANGES_KEY: json.dumps(doc).encode()}


def merge_ranges(parts: list[dict[bytes, bytes]]) -> dict[bytes, bytes]:
    """The `row_group_ranges` of a file written in parts (whole row groups
    each, in order), as one footer entry."""
    docs = [json.loads(p[RANGES_KEY]) for p in parts]
    doc = {"fields": list(_RANGE_FIELDS), "rows": [r for d in docs for r in d["rows"]],
           "ranges": base64.b64encode(b"".join(base64.b64decode(d["ranges"]) for d in docs)).decode()}
    if docs and all("time" in d for d in docs):
        doc["time"] = base64.b64encode(b"".join(base64.b64decode(d["time"]) for d in docs)).decode()
    return {RANGES_KEY: json.dumps(doc).encode()}


def _ranges(pf: pq.ParquetFile) -> tuple[np.ndarray, np.ndarray | None]:
    """Per row group: (bbox envelope and level range (n x 6, float), time
    range (n x 2, int64, or None)): from `RANGES_KEY` when it describes this
    file's row groups, else from the Parquet statistics (infinite where
    absent)."""
    md = pf.metadata
    n = md.num_row_groups
    doc = json.loads(md.metadata[RANGES_KEY]) if md.metadata and RANGES_KEY in md.metadata else None
    if doc is not None and len(doc["rows"]) == n and sum(doc["rows"]) == md.num_rows:
        ranges = np.frombuffer(base64.b64decode(doc["ranges"]), "<f8").reshape(n, len(_RANGE_FIELDS))
        time = np.frombuffer(base64.b64decode(doc["time"]), "<i8").reshape(n, 2) if "time" in doc else None
        return ranges, time
    leaf = {md.schema.column(i).path: i for i in range(md.num_columns)}
    ranges = np.tile([-np.inf, -np.inf, np.inf, np.inf, -np.inf, np.inf], (n, 1))
    time = np.tile([np.iinfo(np.int64).min, np.iinfo(np.int64).max], (n, 1)) if "time" in leaf else None
    unit = pf.schema_arrow.field("time").type.unit if time is not None else None
    for rg in range(n):
        group = md.row_group(rg)
        for name, j in (("bbox.xmin", 0), ("bbox.ymin", 1), ("bbox.xmax", 2), ("bbox.ymax", 3), ("level", 4),
                        ("time", 6)):
            st = group.column(leaf[name]).statistics if name in leaf else None
            if st is None or not st.has_min_max:
                continue
            if j < 2:
                ranges[rg, j] = st.min
            elif j < 4:
                ranges[rg, j] = st.max
            elif j == 4:
                ranges[rg, 4:6] = st.min, st.max
            else:
                time[rg] = [np.datetime64(v, unit).astype(np.int64) for v in (st.min, st.max)]
    return ranges, time


def _live_groups(ranges: np.ndarray, time: np.ndarray | None, query: Query, unit: str | None,
                 envelope: tuple[float, float, float, float]) -> np.ndarray:
    """Whether each row group may hold a row matching `query` in `envelope`."""
    minx, miny, maxx, maxy = envelope
    live = (ranges[:, 2] >= minx) & (ranges[:, 0] <= maxx) & (ranges[:, 3] >= miny) & (ranges[:, 1] <= maxy)
    if query.level is not None:
        live &= (ranges[:, 4] <= query.level) & (ranges[:, 5] >= query.level)
    if time is not None and query.start:
        live &= time[:, 1] >= np.datetime64(query.start, unit).astype(np.int64)
    if time is not None and query.end:
        live &= time[:, 0] <= np.datetime64(query.end, unit).astype(np.int64)
    return live


def _numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed-width Arrow array's values as numpy (a view; booleans
    unpacked), nulls left as whatever the buffer holds: callers mask them
    with `_valid`. Not `to_numpy`: its first call imports pandas (0.2 to
    0.4 s, more than the query, in a `chunkindex query` process)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    n, offset = len(array), array.offset
    data = array.buffers()[1]
    if pa.types.is_boolean(array.type):
        if data is None:
            return np.zeros(n, bool)
        bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
        return bits[offset:offset + n].astype(bool)
    dtype = np.dtype(array.type.to_pandas_dtype()) if not pa.types.is_timestamp(array.type) else np.dtype(np.int64)
    if data is None:
        return np.zeros(n, dtype)
    return np.frombuffer(data, dtype, count=n, offset=offset * dtype.itemsize)


def _valid(array: pa.Array | pa.ChunkedArray) -> np.ndarray | bool:
    """Which values are not null (True when none is)."""
    return _numpy(pc.is_valid(array)) if array.null_count else True


def _arrow(values: np.ndarray) -> pa.Array:
    """An int64 or bool numpy array as Arrow (without `pa.array`: see `_numpy`)."""
    if values.dtype == bool:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), values.size, [None, pa.py_buffer(bits)])
    values = np.ascontiguousarray(values, np.int64)
    return pa.Array.from_buffers(pa.int64(), values.size, [None, pa.py_buffer(values)])


def _mask(table: pa.Table, query: Query, envelope: tuple[float, float, float, float]) -> np.ndarray:
    """Which rows of `table` (bbox and filter columns) match `query` in
    `envelope`: batch by batch (a row group each), on views of its buffers."""
    parts = [_batch_mask(batch, query, envelope) for batch in table.to_batches()]
    return np.concatenate(parts) if parts else np.zeros(0, bool)


def _batch_mask(batch: pa.RecordBatch, query: Query, envelope: tuple[float, float, float, float]) -> np.ndarray:
    minx, miny, maxx, maxy = envelope
    bbox = batch.column("bbox")
    fields = {name: bbox.field(name) for name in ("xmin", "ymin", "xmax", "ymax")}
    # A null bbox (or row) meets no box.
    mask = ((_numpy(fields["xmax"]) >= minx) & (_numpy(fields["xmin"]) <= maxx) & (_numpy(fields["ymax"]) >= miny)
            & (_numpy(fields["ymin"]) <= maxy) & _valid(bbox))
    for field in fields.values():
        mask &= _valid(field)
    if query.variable is not None:
        # `V` also names V in every grid group (`EPSG32755_699960_6300040/V`):
        # tested on the distinct names (read as a dictionary), a few.
        names = batch.column("variable")
        if not pa.types.is_dictionary(names.type):
            names = names.dictionary_encode()
        hit = np.array([v == query.variable or v.endswith("/" + query.variable)
                        for v in names.dictionary.to_pylist()], bool)
        mask &= hit[_numpy(names.indices)] & _valid(names) if len(hit) else False
    if query.level is not None:
        level = batch.column("level")
        mask &= (_numpy(level) == query.level) & _valid(level)
    if "time" in batch.schema.names and (query.start or query.end):
        t = batch.column("time")
        unit = batch.schema.field("time").type.unit
        values = _numpy(t)
        mask &= _valid(t)
        if query.start:
            mask &= values >= np.datetime64(query.start, unit).astype(np.int64)
        if query.end:
            mask &= values <= np.datetime64(query.end, unit).astype(np.int64)
    return mask


def query_index(index: str | Path, query: Query, with_geometry: bool = False) -> pa.Table:
    """The chunks of the footprint index `index` whose footprint intersects
    the query box (and match its time range, variable, level).

    Row groups are skipped by their `bbox`, `level` and `time` ranges (the
    footer's `RANGES_KEY`, else the Parquet statistics);
    in the others the `bbox` (and filter) columns are read first and the
    remaining columns only for the candidate rows' row groups, whose WKB
    footprints are then tested exactly.

    Args:
        index: a footprint GeoParquet (`<id>.footprints.parquet`), a CRI
            index written with footprints (`<id>.cri.parquet`), or any
            Parquet with `geometry` (WKB, WGS84) and `bbox` columns.
        query: the box and filters.
        with_geometry: keep the `geometry` column in the result.

    Returns:
        One row per chunk: variable, level, chunk coordinates c0.., path,
        offset, length, time (and geometry), in index order.

    Example:
        >>> query_index("results/ghrsst-demo/index/ghrsst-demo.footprints.parquet",
        ...             Query((140, -45, 155, -30), variable="analysed_sst", level=0))  # doctest: +SKIP
    """
    import pyarrow.parquet as pq
    import shapely

    # Footprints repeat (every time step of a spatial chunk shares one): read
    # them as a dictionary and test each distinct one once.
    pf = pq.ParquetFile(str(index), read_dictionary=["geometry", "variable", "path"], memory_map=True)
    names = pf.schema_arrow.names
    for needed in ("geometry", "bbox"):
        if needed not in names:
            raise ValueError(f"{index}: no {needed!r} column: not a footprint index")
    if (query.start or query.end) and "time" not in names:
        raise ValueError(f"{index}: no 'time' column to filter on (a CRI index holds time as the c0 chunk "
                         "index: query without --time, or the <id>.footprints.parquet index)")
    geometry = query_geometry(query.bbox, query.crs)
    shapely.prepare(geometry)
    envelopes = [tuple(shapely.bounds(p)) for p in shapely.get_parts(geometry)]
    coords = [c for c in names if c.startswith("c") and c[1:].isdigit()]
    columns = [c for c in ("variable", "level", *coords, "path", "offset", "length", "time", "geometry")
               if c in names]
    # First read: the bbox and only the filter columns the query uses.
    used = {"bbox", *(["variable"] if query.variable is not None else []), *(["level"] if query.level is not None else []),
            *(["time"] if query.start or query.end else [])}
    first = [c for c in ("bbox", "variable", "level", "time") if c in names and c in used]
    rest = [c for c in columns if c not in first]
    # Row groups the statistics leave, then their filter columns in one read
    # (one call: per-call overhead dominates small reads), then the other
    # columns of the row groups holding candidates, in one read too.
    ranges, time = _ranges(pf)
    unit = pf.schema_arrow.field("time").type.unit if "time" in names else None
    live = np.zeros(pf.num_row_groups, bool)
    for envelope in envelopes:
        live |= _live_groups(ranges, time, query, unit, envelope)
    live_groups = np.flatnonzero(live).tolist()
    pieces = []
    if live_groups:
        head = pf.read_row_groups(live_groups, columns=first)
        sizes = np.array([pf.metadata.row_group(rg).num_rows for rg in live_groups], np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        mask = np.zeros(head.num_rows, bool)
        for envelope in envelopes:
            mask |= _mask(head, query, envelope)
        # A row group pruned for one envelope (of a box across 180) only: its rows met the other.
        hit_groups = [i for i in range(len(live_groups)) if mask[starts[i]:starts[i + 1]].any()]
        if hit_groups:
            rows = np.concatenate([np.flatnonzero(mask[starts[i]:starts[i + 1]]) + starts[i] for i in hit_groups])
            local = np.concatenate([np.flatnonzero(mask[starts[i]:starts[i + 1]]) for i in hit_groups])
            within = np.concatenate([[0], np.cumsum(sizes[hit_groups])])
            body = pf.read_row_groups([live_groups[i] for i in hit_groups], columns=rest)
            at = local + np.repeat(within[:-1], [int(mask[starts[i]:starts[i + 1]].sum()) for i in hit_groups])
            body = body.take(_arrow(at))
            head = head.select([c for c in head.column_names if c in columns]).take(_arrow(rows))
            piece = pa.table({c: (head[c] if c in head.column_names else body[c]) for c in columns})
            shapes = piece["geometry"].combine_chunks()
            if pa.types.is_dictionary(shapes.type):
                hit = shapely.intersects(geometry, shapely.from_wkb(shapes.dictionary.to_pylist()))
                keep = hit[_numpy(shapes.indices)] & _valid(shapes)
            else:
                keep = shapely.intersects(geometry, shapely.from_wkb(shapes.to_pylist()))
            pieces.append(piece.filter(_arrow(keep)))
    if pieces:
        table = pa.concat_tables([pa.table({c: _plain(p[c]) for c in p.column_names}) for p in pieces])
    else:
        table = pa.Table.from_batches([], pa.schema([pf.schema_arrow.field(c) for c in columns]))
        table = pa.table({c: _plain(table[c]) for c in table.column_names})
    if not with_geometry:
        table = table.drop_columns(["geometry"])
    return table


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column read as a dictionary (geometry, variable, path) as plain values."""
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


