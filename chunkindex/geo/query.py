"""Spatial and time queries on a footprint index (GeoParquet with `geometry`
and `bbox` columns): the chunks whose footprint intersects a box.

Two stages: Parquet predicate push-down on the `bbox` covering columns (and
`variable`, `level`, `time`) prunes row groups and rows without decoding a
geometry; the candidates' WKB footprints are then tested exactly (shapely).
"""

from __future__ import annotations

import datetime as dt
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


def query_geometry(bbox: tuple[float, float, float, float], crs: str = WGS84):
    """The query box as a WGS84 (Multi)Polygon: edges densified and
    transformed from `crs`; a lon/lat box with minx > maxx wraps the antimeridian."""
    import shapely
    from pyproj import CRS, Transformer

    minx, miny, maxx, maxy = (float(v) for v in bbox)
    if miny > maxy:
        raise ValueError(f"bbox {bbox}: miny > maxy")
    source = CRS.from_user_input(crs)
    if source.is_geographic:
        if minx > maxx:  # across the antimeridian
            return shapely.MultiPolygon([shapely.box(minx, miny, 180.0, maxy), shapely.box(-180.0, miny, maxx, maxy)])
        return shapely.box(minx, miny, maxx, maxy)
    if minx > maxx:
        raise ValueError(f"bbox {bbox}: minx > maxx")
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


def _row_group_may_match(meta: pq.RowGroupMetaData, leaf: dict[str, int], query: Query,
                         envelope: tuple[float, float, float, float]) -> bool:
    """False when the row group's statistics rule every row out."""
    def stats(name: str):
        i = leaf.get(name)
        st = meta.column(i).statistics if i is not None else None
        return st if st is not None and st.has_min_max else None

    minx, miny, maxx, maxy = envelope
    for name, limit, side in (("bbox.xmax", minx, "max"), ("bbox.ymax", miny, "max"),
                              ("bbox.xmin", maxx, "min"), ("bbox.ymin", maxy, "min")):
        st = stats(name)
        if st is not None and (st.max < limit if side == "max" else st.min > limit):
            return False
    st = stats("level")
    if st is not None and query.level is not None and not st.min <= query.level <= st.max:
        return False
    st = stats("time")
    return not (st is not None and ((query.start and st.max < query.start) or (query.end and st.min > query.end)))


def _mask(table: pa.Table, query: Query, envelope: tuple[float, float, float, float]) -> np.ndarray:
    minx, miny, maxx, maxy = envelope
    bbox = table["bbox"].combine_chunks()
    fields = {name: bbox.field(name).to_numpy(zero_copy_only=False) for name in ("xmin", "ymin", "xmax", "ymax")}
    mask = (fields["xmax"] >= minx) & (fields["xmin"] <= maxx) & (fields["ymax"] >= miny) & (fields["ymin"] <= maxy)
    if query.variable is not None:
        # `V` also names V in every grid group (`EPSG32755_699960_6300040/V`).
        names = table["variable"]
        if pa.types.is_dictionary(names.type):
            names = names.cast(names.type.value_type)
        hit = pc.or_(pc.equal(names, query.variable), pc.ends_with(names, "/" + query.variable))
        mask &= hit.to_numpy(zero_copy_only=False)
    if query.level is not None:
        mask &= table["level"].combine_chunks().to_numpy() == query.level
    if "time" in table.column_names and (query.start or query.end):
        # Through int64: a chunked timestamp column's to_numpy goes element by element.
        t = table["time"].combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False)
        unit = table.schema.field("time").type.unit
        if query.start:
            mask &= t >= np.datetime64(query.start, unit).astype(np.int64)
        if query.end:
            mask &= t <= np.datetime64(query.end, unit).astype(np.int64)
    return mask


def query_index(index: str | Path, query: Query, with_geometry: bool = False) -> pa.Table:
    """The chunks of the footprint index `index` whose footprint intersects
    the query box (and match its time range, variable, level).

    Row groups are skipped by the statistics of `bbox`, `level` and `time`;
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
    leaf = {pf.metadata.schema.column(i).path: i for i in range(pf.metadata.num_columns)}
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
    live_groups = [rg for rg in range(pf.num_row_groups)
                   if any(_row_group_may_match(pf.metadata.row_group(rg), leaf, query, e) for e in envelopes)]
    pieces = []
    if live_groups:
        head = pf.read_row_groups(live_groups, columns=first)
        sizes = np.array([pf.metadata.row_group(rg).num_rows for rg in live_groups])
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
            body = body.take(pa.array(at))
            head = head.take(pa.array(rows))
            piece = pa.table({c: (head[c] if c in head.column_names else body[c]) for c in columns})
            shapes = piece["geometry"].combine_chunks()
            if pa.types.is_dictionary(shapes.type):
                hit = shapely.intersects(geometry, shapely.from_wkb(shapes.dictionary.to_numpy(zero_copy_only=False)))
                keep = hit[shapes.indices.to_numpy(zero_copy_only=False)]
            else:
                keep = shapely.intersects(geometry, shapely.from_wkb(shapes.to_numpy(zero_copy_only=False)))
            pieces.append(piece.filter(pa.array(keep)))
    if pieces:
        table = pa.concat_tables([pa.table({c: _plain(p[c]) for c in p.column_names}) for p in pieces])
    else:
        table = pa.schema([pf.schema_arrow.field(c) for c in columns]).empty_table()
        table = pa.table({c: _plain(table[c]) for c in table.column_names})
    if not with_geometry:
        table = table.drop_columns(["geometry"])
    return table


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column read as a dictionary (geometry, variable, path) as plain values."""
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


