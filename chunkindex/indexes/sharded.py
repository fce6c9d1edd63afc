"""The sharded write: every job holds one time block of the archive, never
the whole of it (docs/design/sharded-write.md).

* `plan_shards` cuts the listing (sorted by time) into shards of whole header
  batches, about `shard_refs` references each, moving each cut to the next
  change of time so that no time step is split between two shards.
* `write_shard` saves what the format's `assemble` made of one shard: the
  arrays without their reference columns (`shard.pkl`) and the columns as
  compressed Arrow IPC files (`columns-<i>.arrow`, urls numbered within the
  shard).
* `combine_shards` stacks the shards' arrays along the concat dimension (the
  first dimension of every data array, so a shard's chunks are one run of
  C-order chunk numbers) without reading a column, checking that the shards
  agree; `KerchunkStream` then writes the Kerchunk Parquet record files from
  the shards' columns, `record_size` rows at a time, with the very code of
  the single-job writer (`refs_record_batch`, `write_refs_table`), so the
  index is byte-identical to it.

Other index kinds need every reference at once (`load_columns`): the combine
step writes each only up to its limit in `IN_MEMORY_LIMITS` and refuses
larger archives before writing anything, naming the kinds over their limit.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import pickle
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet

from chunkindex.atomic import atomic_path, write_text
from chunkindex.indexes.kerchunk import (
    JSON_MAX_REFS,
    _link_or_copy,
    consolidated_metadata,
    refs_record_batch,
    write_refs_table,
)
from chunkindex.model import ArraySpec, AssembledIndex
from chunkindex.tables import read_chunk_table, write_chunk_table

log = logging.getLogger("chunkindex")

SHARD_FORMAT = 1
PLAN_FORMAT = 1
# Default references per shard: ~20 bytes of columns a reference plus the
# header rows (~16 bytes a tile) keep a shard job near 1 GB, under 2 GB.
SHARD_REFS = 20_000_000
# The kinds written from every reference at once (`load_columns`, then the
# single writer's code) refuse archives larger than their own limit, so that
# the `write` job stays within 2 GB: from its peak RSS measured one kind at a
# time (bench/scale.py --kinds <kind> --until write --where local), the
# references where the line through the measured points reaches ~1.9 GB,
# rounded down (figures: docs/design/sharded-write.md).
IN_MEMORY_LIMITS: dict[str, int] = {
    "kerchunk-json": JSON_MAX_REFS,  # the JSON document is built whole
    "cri-gpkg": 14_000_000,  # ~116 MB per M references
    "cri-duckdb": 19_000_000,  # ~84 MB per M references
    "footprints": 9_000_000,  # ~175 MB per M references: one row (and WKB) per chunk
    "vrt": 100_000_000,  # ~16 MB per M references: the loaded columns
}
# The whole index written in one job from every header batch (a plan whose
# append is no longer possible) refuses archives larger than this.
IN_MEMORY_MAX_REFS = 20_000_000
# Kinds the combine step writes without every reference in memory (the GTI
# coverage is per file, from the listing).
STREAMED_KINDS = frozenset({"kerchunk_parquet", "cri_parquet", "coverage_gti", "summary", "state"})
# Rows per record batch of a shard's column files (read back one batch at a time).
COLUMN_BATCH_ROWS = 1 << 20
COLUMN_SCHEMA = pa.schema([("url_index", pa.int32()), ("offsets", pa.int64()), ("sizes", pa.int64())])


class ShardMismatch(ValueError):
    """Shards whose arrays do not line up into one index."""


@dataclass(frozen=True)
class Shard:
    """Rows `first_row:end_row` of the listing (file ids, as the listing
    numbers its rows) and the header batches holding them."""

    first_row: int
    end_row: int
    batches: tuple[int, ...]


@dataclass(frozen=True)
class WritePlan:
    """How the write step runs: `append` (new files onto the index) or
    `write` (the whole index, from `shards`)."""

    mode: str
    shards: tuple[Shard, ...]
    references: int
    reason: str = ""

    def to_json(self) -> str:
        return json.dumps({"format": PLAN_FORMAT, "mode": self.mode, "references": self.references,
                           "reason": self.reason,
                           "shards": [dataclasses.asdict(s) for s in self.shards]}, indent=1)

    @classmethod
    def read(cls, path: str | Path) -> WritePlan:
        doc = json.loads(Path(path).read_text())
        if doc.get("format") != PLAN_FORMAT:
            raise ValueError(f"{path}: write plan of another chunkindex version; rerun with --forcerun plan_write")
        shards = tuple(Shard(s["first_row"], s["end_row"], tuple(s["batches"])) for s in doc["shards"])
        return cls(doc["mode"], shards, doc["references"], doc.get("reason", ""))


def batch_references(path: str | Path) -> int:
    """Chunk references a header batch holds (its tile or chunk lists),
    counted from the list offsets of the memory-mapped table alone."""
    table = read_chunk_table(path)
    for column in ("tile_offsets", "chunk_number"):
        if column in table.column_names:
            return int(sum((pc.sum(pc.list_value_length(chunk)).as_py() or 0) for chunk in table[column].chunks))
    return table.num_rows


def plan_shards(times: np.ndarray, batch_size: int, batch_refs: Sequence[int], shard_refs: int) -> list[Shard]:
    """Cut a listing into shards of whole header batches.

    Args:
        times: the listing's `time` column (datetime64, sorted; NaT without times).
        batch_size: files per header batch (the last may hold fewer).
        batch_refs: references of each batch (`batch_references`).
        shard_refs: about this many references per shard (at least one batch each).

    Returns:
        The shards in listing order. A cut falls where the time changes (the
        rows of one time step, every variable's file, stay in one shard);
        without times the listing is one shard.

    Example:
        >>> t = np.array(["2024-01-01", "2024-01-01", "2024-01-02", "2024-01-02"], "datetime64[s]")
        >>> [(s.first_row, s.end_row, s.batches) for s in plan_shards(t, 1, [5, 5, 5, 5], 10)]
        [(0, 2, (0, 1)), (2, 4, (2, 3))]
        >>> [(s.first_row, s.end_row, s.batches) for s in plan_shards(t, 1, [5, 5, 5, 5], 5)]
        [(0, 2, (0, 1)), (2, 4, (2, 3))]
    """
    n = int(times.size)
    if n == 0:
        return []
    cuts = [0]
    held = 0
    for batch, refs in enumerate(batch_refs):
        if held and held + refs > shard_refs:
            cuts.append(batch * batch_size)
            held = 0
        held += refs
    stamps = times.astype("datetime64[us]").astype(np.int64)
    if np.isnat(times).any():
        cuts = [0]  # without times a cut could split a variable's files from the others'
    moved = [0]
    for cut in cuts[1:]:
        while cut < n and stamps[cut] == stamps[cut - 1]:
            cut += 1
        if moved[-1] < cut < n:
            moved.append(cut)
    bounds = [*moved, n]
    return [Shard(a, b, tuple(range(a // batch_size, (b - 1) // batch_size + 1)))
            for a, b in itertools.pairwise(bounds)]


# --- one shard -------------------------------------------------------------------------------


def shard_headers(header_paths: Sequence[str | Path], shard: Shard) -> pa.Table:
    """The header rows of the shard's files from its batches (a batch wholly
    inside the shard is taken memory-mapped, as it is)."""
    tables = []
    for path in header_paths:
        table = read_chunk_table(path)
        ids = table["file_id"]
        low, high = pc.min(ids).as_py(), pc.max(ids).as_py()
        if low is None or (shard.first_row <= low and high < shard.end_row):
            tables.append(table)
        else:
            keep = pc.and_(pc.greater_equal(ids, shard.first_row), pc.less(ids, shard.end_row))
            tables.append(table.filter(keep))
    return pa.concat_tables(tables)


GRID_COLUMNS = ("file_id", "ifd", "geotransform", "width", "height", "crs")


def grid_rows(headers: pa.Table) -> pa.Table | None:
    """The first-IFD header rows of a COG shard's files, with the columns
    `coverage.header_grids` reads (None for other formats)."""
    if not set(GRID_COLUMNS) <= set(headers.column_names):
        return None
    return headers.select(list(GRID_COLUMNS)).filter(pc.equal(headers["ifd"], 0))


def combined_grids(folders: Sequence[str | Path]) -> pa.Table | None:
    """The shards' grid rows (`write_shard`'s `grids`), or None when they kept none."""
    tables = [read_chunk_table(p) for f in folders if (p := Path(f) / "grids.arrow").is_file()]
    return pa.concat_tables(tables) if tables else None


def _stripped(array: ArraySpec) -> ArraySpec:
    empty32, empty64 = np.zeros(0, np.int32), np.zeros(0, np.int64)
    return dataclasses.replace(array, url_index=empty32, offsets=empty64, sizes=empty64)


def write_shard(assembled: AssembledIndex, folder: str | Path, first_file: str,
                grids: pa.Table | None = None) -> None:
    """Save one shard's assembled arrays into `folder` (replaced atomically).

    Args:
        assembled: the format's `assemble` of the shard's files.
        folder: the shard's folder (the write_shard rule's output).
        first_file: the shard's first file (named when shards disagree).
        grids: the header rows that place its files (`grid_rows`), kept
            for the GTI coverage (one small row per file).
    """
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with atomic_path(folder, folder=True) as staging:
        info = []
        written: dict[tuple[int, int, int], int] = {}
        for number, array in enumerate(assembled.arrays):
            item: dict[str, Any] = {"columns": None, "missing": 0}
            if array.inline is None:
                item["missing"] = array.n_missing
                key = (id(array.url_index), id(array.offsets), id(array.sizes))
                if key in written:  # a references-only variant: its array's columns
                    item["columns"] = written[key]
                else:
                    written[key] = item["columns"] = number
                    table = pa.table([pa.array(array.url_index, pa.int32()), pa.array(array.offsets, pa.int64()),
                                      pa.array(array.sizes, pa.int64())], schema=COLUMN_SCHEMA)
                    with pa.OSFile(str(staging / f"columns-{number}.arrow"), "wb") as sink, \
                            pa.ipc.new_file(sink, COLUMN_SCHEMA, options=options) as writer:
                        writer.write_table(table, max_chunksize=COLUMN_BATCH_ROWS)
            info.append(item)
        if grids is not None and grids.num_rows:
            write_chunk_table(grids, staging / "grids.arrow")
        document = {"format": SHARD_FORMAT, "first_file": first_file, "notes": assembled.notes,
                    "skipped_files": assembled.skipped_files, "info": info,
                    "arrays": [_stripped(a) for a in assembled.arrays]}
        with open(staging / "shard.pkl", "wb") as handle:
            pickle.dump(document, handle, protocol=pickle.HIGHEST_PROTOCOL)


@dataclass
class _ShardFile:
    folder: Path
    first_file: str
    notes: list[str]
    skipped_files: list[str]
    arrays: list[ArraySpec]
    info: list[dict[str, Any]]


def _read_shard(folder: str | Path) -> _ShardFile:
    folder = Path(folder)
    try:
        with open(folder / "shard.pkl", "rb") as handle:
            doc = pickle.load(handle)  # written by write_shard of this same workflow run
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise ValueError(f"{folder}: unreadable shard ({exc}); rerun with --forcerun write_shard") from None
    if doc.get("format") != SHARD_FORMAT:
        raise ValueError(f"{folder}: shard of another chunkindex version; rerun with --forcerun write_shard")
    return _ShardFile(folder, doc["first_file"], doc["notes"], doc["skipped_files"], doc["arrays"], doc["info"])


# --- combining --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnSource:
    """One shard's rows of an array: its column file, and what its url
    numbers are shifted by in the combined array's url list."""

    path: Path
    url_offset: int
    rows: int


def _template(array: ArraySpec) -> tuple[dict[str, Any], dict[str, Any]]:
    zarray = dict(array.zarray(), shape=list(array.shape[1:]))
    return zarray, array.zattrs()


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


@dataclass
class CombinedIndex:
    """The shards' arrays stacked into the arrays of the whole index, their
    reference rows left in the shards' column files (`sources`)."""

    assembled: AssembledIndex
    sources: dict[str, list[ColumnSource]]
    # Array name -> the array whose reference rows it has (a references-only variant).
    columns_of: dict[str, str]

    @property
    def references(self) -> int:
        return sum(a.n_chunks for a in self.assembled.arrays if a.inline is None)


def combine_shards(folders: Sequence[str | Path], concat_dim: str, time_notes: bool = False) -> CombinedIndex:
    """Stack the shards' arrays along `concat_dim`, reading no reference row.

    Data arrays whose first dimension is `concat_dim` are stacked (their url
    lists concatenated); 1-D coordinates along it are concatenated; every
    other array is taken from the first shard (static arrays, coordinates
    of the other dimensions), which holds the first files as the single-job
    writer's `assemble` would take them. The shards' notes are merged as the
    single writer lists them (`_merged_notes`); with `time_notes` (NetCDF4/
    HDF5), the notes that depend on every file along `concat_dim` (a static
    array's "indexed from ... alone", gaps in time) are made again from the
    combined arrays.

    Raises:
        ShardMismatch: shards whose arrays differ (names, layout, codecs,
            attributes, coordinates): naming the first file of the shard
            that differs from the first shard's.
    """
    shards = [_read_shard(f) for f in folders]
    if not shards:
        raise ValueError("no shards to combine")
    first = shards[0]
    names = [a.name for a in first.arrays]
    for shard in shards[1:]:
        other = [a.name for a in shard.arrays]
        if other != names:
            raise ShardMismatch(f"{shard.first_file}: the files from here on make arrays {', '.join(other)}, "
                                f"the files from {first.first_file} on make {', '.join(names)}")
    arrays: list[ArraySpec] = []
    sources: dict[str, list[ColumnSource]] = {}
    columns_of: dict[str, str] = {}
    missing: dict[str, int] = {}
    for number, base in enumerate(first.arrays):
        parts = [s.arrays[number] for s in shards]
        along = bool(base.dims) and base.dims[0] == concat_dim and len(shards) > 1
        if base.inline is not None:
            arrays.append(_combined_inline(base, parts, shards, along))
            continue
        column_number = first.info[number]["columns"]
        if column_number != number:
            columns_of[base.name] = first.arrays[column_number].name
        if not along:  # static: indexed from the first files, as the single-job writer does
            arrays.append(base)
            sources[base.name] = [ColumnSource(first.folder / f"columns-{column_number}.arrow", 0, base.n_chunks)]
            missing[base.name] = first.info[number]["missing"]
            continue
        template = _template(base)
        for shard, part in zip(shards[1:], parts[1:]):
            other = _template(part)
            if other != template:
                what = _differences(template[0], other[0]) + [f"attribute {k}" for k in
                                                              _differences(template[1], other[1])]
                raise ShardMismatch(f"{shard.first_file}: array {base.name} differs from {first.first_file}'s "
                                    f"in {', '.join(what)}: the files do not line up into one array")
        for shard, part in zip(shards[:-1], parts[:-1]):
            if part.shape[0] % base.chunks[0]:
                raise ShardMismatch(f"{shard.first_file}: array {base.name}: the shard's {concat_dim} length "
                                    f"{part.shape[0]} is not a multiple of its chunk size {base.chunks[0]}")
        urls: list[str] = []
        column_sources = []
        for shard, part in zip(shards, parts):
            path = shard.folder / f"columns-{shard.info[number]['columns']}.arrow"
            column_sources.append(ColumnSource(path, len(urls), part.n_chunks))
            urls.extend(part.urls)
        raw = next((p.missing_raw for p in parts if p.missing_raw is not None), None)
        combined = dataclasses.replace(base, shape=(sum(p.shape[0] for p in parts), *base.shape[1:]), urls=urls,
                                       missing_raw=raw)
        if combined.n_chunks != sum(p.n_chunks for p in parts):
            raise ShardMismatch(f"array {base.name}: the shards' chunks do not stack along {concat_dim}")
        arrays.append(combined)
        sources[base.name] = column_sources
        missing[base.name] = sum(s.info[number]["missing"] for s in shards)
    # A variant's url list is its array's (the writers share reference rows by it).
    by_name = {a.name: a for a in arrays}
    for name, source in columns_of.items():
        by_name[name].urls = by_name[source].urls
    notes = _merged_notes(shards, arrays, concat_dim, time_notes)
    assembled = AssembledIndex(arrays=arrays, notes=notes,
                               skipped_files=[f for s in shards for f in s.skipped_files], missing=missing)
    return CombinedIndex(assembled, sources, columns_of)


def _merged_notes(shards: list[_ShardFile], arrays: list[ArraySpec], concat_dim: str, time_notes: bool
                  ) -> list[str]:
    """The notes the single writer would list for the combined arrays.

    Each shard notes what it saw, prefixed by the array's name; the single
    writer lists them array by array. So the shards' notes, without
    repeats, are ordered by their array's place (stable: a shard's own order
    within an array). With `time_notes`, a static array's note names the
    archive's first file and gaps along `concat_dim` are found on the whole
    coordinate (`formats.hdf.assemble`: the median step, gaps over 1.5 times
    it), as the single writer finds them, then the array's other notes.
    """
    notes = list(dict.fromkeys(n for s in shards for n in s.notes))
    if len(shards) == 1:
        return notes
    notes = _summed_big_chunk_notes(notes)
    static_tail = f": has no {concat_dim} dimension; indexed from "
    gap_infix = f": gap in {concat_dim} between "
    extra: list[str] = []
    if time_notes:
        coordinate = next((a for a in arrays if a.name == concat_dim and a.inline is not None), None)
        # Without the whole coordinate the shards' own gap notes stay.
        notes = [n for n in notes if static_tail not in n and (coordinate is None or gap_infix not in n)]
        values = (np.frombuffer(coordinate.inline or b"", coordinate.dtype).tolist()
                  if coordinate is not None else [])
        diffs = np.diff(values)
        typical = float(np.median(diffs)) if diffs.size else 0.0
        gaps = np.flatnonzero(diffs > 1.5 * typical).tolist() if typical else []
        for array in arrays:
            if array.inline is not None or "variant_of" in array.attrs.get("chunkindex", {}):
                continue
            if not array.dims or array.dims[0] != concat_dim:
                extra.append(f"{array.name}{static_tail}{array.urls[0]} alone")
            else:
                extra += [f"{array.name}{gap_infix}{values[k]} and {values[k + 1]}" for k in gaps]
    place = {a.name: number for number, a in enumerate(arrays)}

    def key(item: tuple[int, str]) -> tuple[int, int, int]:
        # An array's notes in the order `assemble` makes them: the files'
        # order and time gaps, its attributes, then `add_data_array`'s.
        order, note = item
        rank = (0 if static_tail in note else 1 if gap_infix in note else 3 if _BIG_CHUNKS.match(note)
                else 4 if note.endswith(" is not decodable by GDAL") else 2)
        return place.get(note.split(": ", 1)[0], len(arrays)), rank, order

    return [n for _, n in sorted(enumerate(extra + notes), key=key)]


_BIG_CHUNKS = re.compile(r"^(?P<name>.+): (?P<count>\d+) chunks larger than 2 GiB \(up to (?P<size>\d+) bytes\)"
                         r"(?P<rest>.*)$", re.DOTALL)


def _summed_big_chunk_notes(notes: list[str]) -> list[str]:
    """One note per array of chunks over 2 GiB (`AssembledIndex.add_data_array`),
    counted over every shard, where each shard noted its own."""
    found: dict[str, tuple[int, int, str]] = {}
    for note in notes:
        if match := _BIG_CHUNKS.match(note):
            count, size, _ = found.get(match["name"], (0, 0, ""))
            found[match["name"]] = (count + int(match["count"]), max(size, int(match["size"])), match["rest"])
    out, done = [], set()
    for note in notes:
        match = _BIG_CHUNKS.match(note)
        if match is None:
            out.append(note)
        elif match["name"] not in done:
            done.add(match["name"])
            count, size, rest = found[match["name"]]
            out.append(f"{match['name']}: {count} chunks larger than 2 GiB (up to {size} bytes){rest}")
    return out


def _combined_inline(base: ArraySpec, parts: list[ArraySpec], shards: list[_ShardFile], along: bool) -> ArraySpec:
    """An inline array (a coordinate) of the whole index."""
    if along and len(base.shape) == 1:
        values = [np.frombuffer(p.inline or b"", base.dtype) for p in parts]
        for shard, before, after in zip(shards[1:], values[:-1], values[1:]):
            if before.size and after.size and not after[0] > before[-1]:
                raise ShardMismatch(f"{shard.first_file}: {base.name} {after[0]} does not follow {before[-1]} "
                                    "of the files listed before it: the times in the file names and the "
                                    f"files' own {base.name} values disagree in order")
        joined = np.concatenate(values)
        return dataclasses.replace(base, shape=(joined.size,), chunks=(max(joined.size, 1),),
                                   inline=joined.tobytes())
    for shard, part in zip(shards[1:], parts[1:]):
        if (part.zarray(), part.zattrs(), part.inline) != (base.zarray(), base.zattrs(), base.inline):
            raise ShardMismatch(f"{shard.first_file}: {base.name} differs from {shards[0].first_file}'s")
    return base


def _rows(sources: Sequence[ColumnSource], size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The combined reference rows of an array, `size` at a time (the last
    run shorter), read one record batch of a shard's column file at a time."""
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    held = 0

    def take(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nonlocal held
        out = [np.concatenate([p[i] for p in pending]) if len(pending) > 1 else pending[0][i] for i in range(3)]
        pending.clear()
        if out[0].size > n:
            pending.append((out[0][n:], out[1][n:], out[2][n:]))
        held = out[0].size - n
        return out[0][:n], out[1][:n], out[2][:n]

    for source in sources:
        with pa.OSFile(str(source.path), "rb") as handle:
            reader = pa.ipc.open_file(handle)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                url_index = batch.column(0).to_numpy()
                if source.url_offset:
                    url_index = np.where(url_index >= 0, url_index + np.int32(source.url_offset), url_index)
                pending.append((url_index, batch.column(1).to_numpy(), batch.column(2).to_numpy()))
                held += batch.num_rows
                while held >= size:
                    yield take(size)
    if held:
        yield take(held)


def load_columns(combined: CombinedIndex) -> None:
    """Give every array of `combined` its whole reference columns (for the
    kinds written from every reference at once)."""
    by_name = {a.name: a for a in combined.assembled.arrays}
    for name, sources in combined.sources.items():
        if name in combined.columns_of:
            continue
        array = by_name[name]
        url_index, offsets, sizes = next(_rows(sources, array.n_chunks), (np.zeros(0, np.int32),
                                                                         np.zeros(0, np.int64),
                                                                         np.zeros(0, np.int64)))
        array.url_index, array.offsets, array.sizes = url_index, offsets, sizes
    for name, source in combined.columns_of.items():
        twin, array = by_name[name], by_name[source]
        twin.url_index, twin.offsets, twin.sizes = array.url_index, array.offsets, array.sizes


class KerchunkStream:
    """A Kerchunk Parquet writer (`pipeline.KerchunkParquetWriter`) that takes
    each array's reference rows from the shards' column files, one record
    file at a time: memory holds a few record files, not the index."""

    def __init__(self, combined: CombinedIndex) -> None:
        self.combined = combined

    def _shares_rows(self, array: ArraySpec, by_name: dict[str, ArraySpec]) -> str | None:
        """The array whose record files `array` (a references-only variant)
        can share, as `kerchunk.same_references` decides for whole arrays."""
        source = self.combined.columns_of.get(array.name)
        if source is None or source not in by_name:
            return None
        other = by_name[source]
        missing = self.combined.assembled.missing.get(source, 0)
        same = array.chunks == other.chunks and array.shape == other.shape
        return source if same and (other.missing_raw == array.missing_raw or not missing) else None

    def __call__(self, arrays: list[ArraySpec], target: str | Path, record_size: int = 100_000,
                 root_attrs: dict[str, Any] | None = None, progress: Callable[[int, int], None] | None = None,
                 threads: int = 1) -> Path:
        target = Path(target)
        by_name = {a.name: a for a in arrays}
        total = sum(a.n_chunks for a in arrays)
        written = 0
        in_flight: collections.deque[Future[int]] = collections.deque()

        def write_one(window: ArraySpec, n: int, urls: pa.Array, path: Path) -> int:
            write_refs_table(refs_record_batch(window, 0, n, urls), path)
            return n

        def settle(limit: int) -> None:
            nonlocal written
            while len(in_flight) > limit:
                written += in_flight.popleft().result()
                if progress is not None:
                    progress(written, total)

        with atomic_path(target, folder=True) as staging, \
                ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            meta = {"metadata": consolidated_metadata(arrays, root_attrs or {}), "record_size": record_size}
            (staging / ".zmetadata").write_text(json.dumps(meta, separators=(",", ":")))
            shared: dict[str, str] = {}
            for array in arrays:
                folder = staging / array.name
                folder.mkdir(parents=True)
                source = self._shares_rows(array, by_name)
                if source is not None:
                    shared[array.name] = shared.get(source, source)
                    continue
                urls = pa.array(array.urls, pa.string())
                if array.inline is not None:
                    in_flight.append(pool.submit(write_one, array, 1, urls, folder / "refs.0.parq"))
                    continue
                rows = self.combined.sources[self.combined.columns_of.get(array.name, array.name)]
                for k, (url_index, offsets, sizes) in enumerate(_rows(rows, record_size)):
                    window = dataclasses.replace(array, url_index=url_index, offsets=offsets, sizes=sizes)
                    in_flight.append(pool.submit(write_one, window, url_index.size, urls,
                                                 folder / f"refs.{k}.parq"))
                    settle(2 * max(1, threads))  # bounded: a few record files in memory
            settle(0)
            for name, source in shared.items():
                for part in (staging / source).iterdir():
                    _link_or_copy(part, staging / name / part.name)
                written += by_name[name].n_chunks
                if progress is not None:
                    progress(written, total)
        return target


class CriStream:
    """A CRI Parquet writer (`flat.write_cri_parquet`'s signature, less the
    converter options) that takes each array's rows from the shards' column
    files one row group at a time, cuts the row groups where the single
    writer does (`_Part.cuts`: whole steps of the outermost dimension), encodes
    them in the same runs of `GROUPS_PER_BUFFER` and splices each run into the
    file as it comes (`parquet_splice.SpliceWriter`): the bytes equal the
    single writer's, memory holds a few runs."""

    def __init__(self, combined: CombinedIndex) -> None:
        self.combined = combined

    def _row_groups(self, rows: Any, part: Any, target: int) -> Iterator[pa.RecordBatch]:
        """The row groups of one (variable, level), in order."""
        array = part.array
        if array.inline is not None:
            yield rows.batch(part, 0, 1)
            return
        name = array.name
        sources = self.combined.sources[self.combined.columns_of.get(name, name)]
        n = array.n_chunks - self.combined.assembled.missing.get(name, 0)  # rows: chunks with a file
        grid = array.chunk_grid
        if n <= target or len(grid) < 2:  # cut every `target` rows
            for numbers, columns in _present_rows(_rows(sources, COLUMN_BATCH_ROWS), target):
                yield rows.batch_of(part, numbers, columns)
            return
        per_step = int(np.prod(grid[1:], dtype=np.int64))
        size = max(1, target // per_step) * per_step  # whole steps: one row group's chunks
        for k, (url_index, offsets, sizes) in enumerate(_rows(sources, size)):
            keep = url_index >= 0
            if not keep.any():
                continue  # no row: the single writer's cut points coincide there
            yield rows.batch_of(part, np.flatnonzero(keep) + k * size,
                                (url_index[keep], offsets[keep], sizes[keep]))

    def __call__(self, assembled: AssembledIndex, target: str | Path, files: pa.Table | None = None,
                 root_attrs: dict[str, Any] | None = None, threads: int | None = None,
                 footprints: bool = False, row_group_rows: int | None = None) -> Path:
        from chunkindex.indexes import flat, parquet_splice

        row_group_rows = row_group_rows or flat.ROW_GROUP_ROWS
        doc, rows = flat._document_and_rows(assembled, files, root_attrs, None, True, None, footprints)
        options = flat._parquet_options(rows.schema)
        metadata = {flat.CRI_KEY.decode(): json.dumps(doc, separators=(",", ":"))}
        if rows.footprints is not None:
            metadata["geo"] = json.dumps(flat._geo_metadata(rows.footprints))

        def encode(batches: list[pa.RecordBatch]) -> Any:
            sink = pa.BufferOutputStream()
            with pa.parquet.ParquetWriter(sink, rows.schema, **options) as writer:
                for batch in batches:
                    writer.write_batch(batch, row_group_size=batch.num_rows)
            return parquet_splice.split(sink.getvalue().to_pybytes(), "an encoded row-group buffer")

        target = Path(target)
        workers = max(1, threads or 1)
        with atomic_path(target) as staging, open(staging, "wb") as handle, \
                ThreadPoolExecutor(max_workers=workers) as pool:
            splice = parquet_splice.SpliceWriter(handle)
            in_flight: collections.deque[Future[Any]] = collections.deque()
            run: list[pa.RecordBatch] = []
            runs = 0

            def submit(batches: list[pa.RecordBatch]) -> None:
                nonlocal runs
                runs += 1
                in_flight.append(pool.submit(encode, batches))
                while len(in_flight) > 2 * workers:  # bounded: a few runs in memory
                    splice.add(in_flight.popleft().result())

            for part in rows.parts:
                for batch in self._row_groups(rows, part, row_group_rows):
                    run.append(batch)
                    if len(run) == flat.GROUPS_PER_BUFFER:
                        submit(run)
                        run = []
            if run or not runs:  # the single writer encodes one empty run for an empty index
                submit(run)
            while in_flight:
                splice.add(in_flight.popleft().result())
            splice.close(metadata)
        return target


def _present_rows(windows: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int
                  ) -> Iterator[tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """(chunk numbers, (url index, offsets, sizes)) of the chunks with a file,
    `size` rows at a time (the last run shorter), from consecutive windows."""
    held: list[tuple[np.ndarray, ...]] = []
    count = first = 0
    for url_index, offsets, sizes in windows:
        keep = url_index >= 0
        held.append((np.flatnonzero(keep) + first, url_index[keep], offsets[keep], sizes[keep]))
        first += url_index.size
        count += int(keep.sum())
        while count >= size:
            joined = [np.concatenate([h[i] for h in held]) for i in range(4)]
            yield joined[0][:size], (joined[1][:size], joined[2][:size], joined[3][:size])
            held = [tuple(c[size:] for c in joined)]
            count -= size
    if count:
        joined = [np.concatenate([h[i] for h in held]) for i in range(4)]
        yield joined[0], (joined[1], joined[2], joined[3])


def in_memory_refusal(outputs: dict[str, str], references: int, limits: dict[str, int] | None = None) -> str | None:
    """Why the kinds of `outputs` written from every reference at once cannot
    be written for `references` references (None: they can): each kind over
    its limit is named with it. `limits`: `IN_MEMORY_LIMITS` by default.

    Example:
        >>> why = in_memory_refusal({"footprints_parquet": "x", "vrt": "y"}, 5, {"footprints": 4, "vrt": 9})
        >>> why.partition(": ")[2].split(";")[0]
        'footprints (limit 4)'
        >>> in_memory_refusal({"vrt": "y"}, 5, {"footprints": 4, "vrt": 9}) is None
        True
    """
    from chunkindex.pipeline import OUTPUT_FILES

    limits = IN_MEMORY_LIMITS if limits is None else limits
    heavy = set(outputs) - STREAMED_KINDS
    kinds = sorted(kind for kind, files in OUTPUT_FILES.items() if heavy & {name for name, _ in files})
    over = [f"{kind} (limit {limits[kind]:,})" for kind in kinds if references > limits[kind]]
    if not over:
        return None
    return (f"{references:,} references are more than the write job holds within 2 GB for the output kinds "
            f"written in one job from every reference: {', '.join(over)}; kerchunk-parquet and cri-parquet "
            "are written from shards: drop the others from the recipe's output.kinds (or split the archive)")


def write_plan(plan: WritePlan, path: str | Path) -> None:
    """Write the plan (atomically)."""
    write_text(path, plan.to_json())
