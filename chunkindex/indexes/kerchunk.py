"""Kerchunk references: the Parquet (a folder GDAL opens as `ZARR:"<dir>"`)
and JSON writers, written atomically (chunkindex.atomic) so a failed write
never replaces a good index, and `KerchunkIndex`, the one reader of both
(validation, the command line, appending and `lookup_reference` use it).

Parquet layout, as GDAL (>= 3.11) and fsspec's LazyReferenceMapper read it:
`.zmetadata` = `{"metadata": {<key>: <JSON object>}, "record_size": N}`, and
per array `<name>/refs.<k>.parq` with columns `path` (optional string,
dictionary-encoded), `offset` and `size` (required int64) and `raw`
(optional binary), as kerchunk's own writer declares them, where row `r` of
file `k` is C-order chunk number `k * N + r`.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chunkindex.atomic import atomic_path
from chunkindex.codecs import REFS_ONLY_NOTE
from chunkindex.model import COMPLEX_INT, REFS_ONLY_GROUP, ArraySpec, ChunkGrid
from chunkindex.tables import read_parquet

# `path` is written from an Arrow dictionary (no string per row is ever made)
# into a dictionary-encoded Parquet string column. The Arrow schema is not
# stored in the file: GDAL's Parquet driver would read an Arrow dictionary
# type as an integer field with a coded domain, which its Kerchunk reader
# rejects; without it every reader sees a plain string column.
#
# Column types and nullability are kerchunk's own (`refs_to_dataframe`):
# `path` and `raw` optional, `offset` and `size` *required* int64 with
# statistics. fsspec's default Parquet engine (fastparquet) reads an int64
# column with no null count as float64, which its ReferenceFileSystem cannot
# use as a byte range.
REFS_SCHEMA = pa.schema([
    pa.field("path", pa.dictionary(pa.int32(), pa.string())),
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("size", pa.int64(), nullable=False),
    pa.field("raw", pa.binary()),
])
REQUIRED_COLUMNS = ("offset", "size")
JSON_MAX_REFS = 2_000_000
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": ["path"],
    "column_encoding": {"offset": "DELTA_BINARY_PACKED", "size": "DELTA_BINARY_PACKED"},
    # fastparquet takes an int64 column without a null count for one that
    # may hold nulls and reads it as float64, whatever its repetition:
    # offset and size carry statistics (null count 0), as kerchunk's do.
    "write_statistics": list(REQUIRED_COLUMNS),
    "store_schema": False,
}


class KerchunkRefused(ValueError):
    """No array of the dataset can be written as Kerchunk references."""


def zarr_readable(arrays: list[ArraySpec]) -> tuple[list[ArraySpec], list[str]]:
    """The arrays a Kerchunk index can hold, and a note for each left out.

    A Zarr chunk is always full, so arrays whose edge chunks are stored
    short (`short_edge_dims`: a TIFF's short last strip or short edge tiles)
    are left out of the Kerchunk index, as are complex integer arrays (no
    Zarr data type); the CRI index holds them.
    """
    kept, notes = [], []
    for array in arrays:
        variant = "variant_of" in array.attrs.get("chunkindex", {})
        if (array.short_edge_dims or COMPLEX_INT.match(array.dtype)) and variant:
            continue  # a `_refs_only` variant goes with its array, without a note of its own
        if COMPLEX_INT.match(array.dtype):
            bits = 8 * int(array.dtype[-1])
            notes.append(f"{array.name}: left out of the Kerchunk index: complex integer samples ({bits}-bit integer "
                         f"pairs, GDAL's CInt{bits}) have no NumPy/Zarr data type; the CRI index (output kind "
                         "cri-parquet) holds them, or convert them to complex floats (gdal_translate -ot CFloat32)")
            continue
        if array.short_edge_dims:
            where = f" ({array.urls[0]}{' and others' if len(array.urls) > 1 else ''})" if array.urls else ""
            notes.append(
                f"{array.name}: left out of the Kerchunk index{where}: its last chunk along "
                f"{', '.join(array.short_edge_dims)} is stored short (a TIFF short last strip or short edge "
                "tiles), which no Zarr reader pads; the CRI index (output kind cri-parquet) holds it")
        else:
            kept.append(array)
    return kept, notes


def consolidated_metadata(arrays: Iterable[ArraySpec], root_attrs: dict[str, Any]) -> dict[str, Any]:
    """`.zmetadata`'s `metadata`: the root group, every sub-group an array
    path names (`ovr2/`, `refs_only/`, ...) and every array."""
    metadata: dict[str, Any] = {".zgroup": {"zarr_format": 2}, ".zattrs": root_attrs}
    for array in arrays:
        parts = array.name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            group = "/".join(parts[:depth])
            if f"{group}/.zgroup" not in metadata:
                metadata[f"{group}/.zgroup"] = {"zarr_format": 2}
                metadata[f"{group}/.zattrs"] = group_attributes(parts[depth - 1])
        metadata[f"{array.name}/.zarray"] = array.zarray()
        metadata[f"{array.name}/.zattrs"] = array.zattrs()
    # Sorted, so the keys of each group are contiguous: zarr-python 3.1 nests
    # consolidated v2 metadata with itertools.groupby and loses a group's
    # children otherwise (GroupNotFoundError on open).
    return dict(sorted(metadata.items()))


def group_attributes(name: str) -> dict[str, Any]:
    """What a sub-group holds, for a reader who lists it."""
    if name == REFS_ONLY_GROUP:
        return {"description": "arrays whose chunks no GDAL reader decodes: " + REFS_ONLY_NOTE,
                "chunkindex_warning": REFS_ONLY_NOTE.upper()}
    if name.startswith("ovr") and name[3:].isdigit():
        return {"description": f"internal overview of the source files, 1/{name[3:]} of the full resolution "
                               "in x and y", "overview_factor": int(name[3:])}
    return {}


def write_refs_table(table: pa.Table | pa.RecordBatch, path: Path) -> None:
    """Write one Kerchunk Parquet record file (`refs.<k>.parq`)."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    # Rows read back from an older record file (append) may declare offset and
    # size optional: write them required, as kerchunk does (the writer checks
    # that they hold no null).
    schema = pa.schema([f.with_nullable(f.name not in REQUIRED_COLUMNS) for f in table.schema])
    if not schema.equals(table.schema):
        table = pa.Table.from_arrays(table.columns, schema=schema)
    pq.write_table(table, path, **PARQUET_OPTIONS)


def same_references(array: ArraySpec, other: ArraySpec) -> bool:
    """Whether two arrays have the very same reference rows (a references-only
    variant and its array, unless their encoded fill chunks differ)."""
    return (array.inline is None and other.inline is None and array.urls is other.urls
            and array.url_index is other.url_index and array.offsets is other.offsets
            and array.sizes is other.sizes and array.chunks == other.chunks and array.shape == other.shape
            and (array.missing_raw == other.missing_raw or not array.n_missing))


def _link_or_copy(source: Path, target: Path) -> None:
    """Share a reference file's bytes (hard link), or copy where links fail."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def refs_record_batch(array: ArraySpec, start: int, stop: int, urls: pa.Array | None = None) -> pa.RecordBatch:
    """Reference rows `start:stop` of `array` as one record batch (`urls`: the
    array's URLs as an Arrow array, made once per array)."""
    n = stop - start
    if array.inline is not None:
        return pa.record_batch([
            pa.DictionaryArray.from_arrays(pa.array([None], pa.int32()), pa.array([], pa.string())),
            pa.array([0], pa.int64()), pa.array([0], pa.int64()), pa.array([array.inline], pa.binary()),
        ], schema=REFS_SCHEMA)
    index = array.url_index[start:stop]
    missing = index < 0
    # Each record file's dictionary holds only the URLs its rows use: the
    # whole archive's URLs in every file would grow the index as files x
    # references (86,600 URLs cost 330 KB and 0.23 s per 100,000-row file).
    used = np.unique(index[~missing])
    remap = np.zeros(max(len(array.urls), 1), np.int32)
    remap[used] = np.arange(used.size, dtype=np.int32)
    indices = pa.array(remap[np.where(missing, 0, index)], pa.int32(), mask=missing)
    all_urls = urls if urls is not None else pa.array(array.urls, pa.string())
    paths = pa.DictionaryArray.from_arrays(indices, all_urls.take(pa.array(used, pa.int64())))
    if missing.any() and array.missing_raw is not None:
        # Parquet rows are positional: a chunk with no data carries the encoded
        # fill chunk inline (GDAL reads a null path without raw as an error).
        # Built from buffers: validity = missing, every value the same bytes.
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum(missing * len(array.missing_raw), out=offsets[1:])
        data = pa.py_buffer(array.missing_raw * int(missing.sum()))
        validity = pa.array(missing, pa.bool_()).buffers()[1]
        raw = pa.Array.from_buffers(pa.binary(), n, [validity, pa.py_buffer(offsets.tobytes()), data])
    else:
        raw = pa.nulls(n, pa.binary())
    offsets, sizes = array.offsets[start:stop], array.sizes[start:stop]
    if missing.any():
        offsets, sizes = np.where(missing, 0, offsets), np.where(missing, 0, sizes)
    return pa.record_batch([paths, pa.array(offsets, pa.int64()), pa.array(sizes, pa.int64()), raw],
                           schema=REFS_SCHEMA)


def write_kerchunk_parquet(
    arrays: list[ArraySpec],
    target: str | Path,
    record_size: int = 100_000,
    root_attrs: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    threads: int = 1,
) -> Path:
    """Write a Kerchunk Parquet reference folder at `target` (replaced atomically).

    Args:
        arrays: the assembled arrays (references and inline coordinates).
        target: the index folder to write; an existing one is replaced whole.
        record_size: references per `refs.<k>.parq` file.
        root_attrs: attributes of the root group.
        progress: called with (references written, total) as record files complete.
        threads: record files encoded at once (pyarrow releases the GIL); the
            caller's thread budget (Snakemake's `threads`, the CLI's `--threads`).

    Returns:
        `target`.
    """
    target = Path(target)
    with atomic_path(target, folder=True) as staging:
        meta = {"metadata": consolidated_metadata(arrays, root_attrs or {}), "record_size": record_size}
        (staging / ".zmetadata").write_text(json.dumps(meta, separators=(",", ":")))
        total = sum(a.n_chunks for a in arrays)
        written = 0
        jobs = []
        same_refs: dict[str, str] = {}  # array -> the array whose reference files it shares
        for array in arrays:
            folder = staging / array.name
            folder.mkdir(parents=True)
            twin = next((other for other in arrays[:arrays.index(array)] if same_references(array, other)), None)
            if twin is not None:
                same_refs[array.name] = same_refs.get(twin.name, twin.name)
                continue
            urls = pa.array(array.urls, pa.string())
            n = 1 if array.inline is not None else array.n_chunks
            for k in range(math.ceil(n / record_size)):
                jobs.append((array, k * record_size, min(n, (k + 1) * record_size), urls, folder / f"refs.{k}.parq"))

        def write_one(job: tuple[ArraySpec, int, int, pa.Array, Path]) -> int:
            array, start, stop, urls, path = job
            batch = refs_record_batch(array, start, stop, urls)
            write_refs_table(batch, path)
            return stop - start

        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            for rows in pool.map(write_one, jobs):
                written += rows
                if progress is not None:
                    progress(written, total)
        for name, source in same_refs.items():
            for part in (staging / source).iterdir():
                _link_or_copy(part, staging / name / part.name)
            written += next(a.n_chunks for a in arrays if a.name == name)
            if progress is not None:
                progress(written, total)
    return target


def write_kerchunk_json(
    arrays: list[ArraySpec], target: str | Path, root_attrs: dict[str, Any] | None = None
) -> Path:
    """Write Kerchunk JSON (version 1); chunks with no data are left out and
    read as the fill value."""
    total = sum(a.n_chunks for a in arrays)
    if total > JSON_MAX_REFS:
        raise ValueError(f"{total} references are too many for Kerchunk JSON (limit {JSON_MAX_REFS}); "
                         "use kerchunk-parquet")
    target = Path(target)
    refs: dict[str, Any] = {k: json.dumps(v) for k, v in consolidated_metadata(arrays, root_attrs or {}).items()}
    for array in arrays:
        if array.inline is not None:
            refs[f"{array.name}/0"] = "base64:" + base64.b64encode(array.inline).decode()
            continue
        present = np.flatnonzero(array.url_index >= 0)
        keys = array.grid.keys(present)
        urls = np.asarray(array.urls, dtype=object)[array.url_index[present]]
        offsets = array.offsets[present].tolist()
        sizes = array.sizes[present].tolist()
        refs.update((f"{array.name}/{k}", [u, o, s]) for k, u, o, s in zip(keys, urls, offsets, sizes))
    with atomic_path(target) as staging, open(staging, "w") as handle:
        json.dump({"version": 1, "refs": refs}, handle, separators=(",", ":"))
    return target


@dataclass(frozen=True)
class ChunkReference:
    """Where one chunk's bytes are: a range of a file (`path`, `offset`,
    `size`), bytes carried inline in the index (`raw_bytes` of them), or
    nowhere (the chunk reads as the array's fill value)."""

    path: str | None = None
    offset: int = 0
    size: int | None = None
    raw_bytes: int | None = None

    @property
    def is_fill(self) -> bool:
        """True when the chunk has no bytes at all and reads as the fill value."""
        return self.path is None and self.raw_bytes is None


@dataclass
class ArrayReferences:
    """Every reference of one array as columns: `codes[n]` is the position in
    `files` of chunk `n`'s file, or -1 for a chunk with no file (no data, or
    carried inline). Codes, not strings: an array may hold tens of millions
    of references."""

    codes: np.ndarray
    files: list[str]
    offsets: np.ndarray
    sizes: np.ndarray

    @property
    def referenced_files(self) -> set[str]:
        return {self.files[c] for c in np.unique(self.codes[self.codes >= 0]).tolist()}


class KerchunkIndex:
    """A Kerchunk Parquet folder or Kerchunk JSON file, opened for reading."""

    def __init__(self, path: str | Path, document: dict[str, Any]) -> None:
        self.path = Path(path)
        self.document = document  # Parquet: the .zmetadata document as read; JSON: metadata and refs

    @classmethod
    def open(cls, index: str | Path) -> KerchunkIndex:
        """Open `index`; ValueError names what makes it not a Kerchunk index."""
        index = Path(index)
        if index.is_dir():
            zmeta = index / ".zmetadata"
            if not zmeta.is_file():
                raise ValueError(f"{index} is not a Kerchunk Parquet index (no .zmetadata)")
            doc = json.loads(zmeta.read_text())
            if "metadata" not in doc or "record_size" not in doc:
                raise ValueError(f"{index}/.zmetadata is not Kerchunk Parquet metadata (needs 'metadata' and 'record_size')")
            return cls(index, doc)
        if index.is_file():
            try:
                doc = json.loads(index.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{index} is not a Kerchunk JSON index: {exc}") from None
            refs = doc.get("refs", doc)
            metadata = {k: (json.loads(v) if isinstance(v, str) else v) for k, v in refs.items()
                        if k.endswith((".zarray", ".zattrs", ".zgroup"))}
            if not any(k.endswith(".zarray") for k in metadata):
                raise ValueError(f"{index} is not a Kerchunk JSON index (no .zarray entries)")
            return cls(index, {"metadata": metadata, "record_size": None, "refs": refs})
        raise FileNotFoundError(f"{index} does not exist")

    @property
    def metadata(self) -> dict[str, Any]:
        """The consolidated metadata: `<array>/.zarray`, `<array>/.zattrs`, ..."""
        return self.document["metadata"]

    @property
    def record_size(self) -> int | None:
        """Rows per record file (Parquet), None for JSON."""
        return self.document["record_size"]

    @property
    def json_refs(self) -> dict[str, Any] | None:
        return self.document.get("refs")

    @property
    def array_names(self) -> list[str]:
        return sorted(k[: -len("/.zarray")] for k in self.metadata if k.endswith("/.zarray"))

    def zarray(self, name: str) -> dict[str, Any]:
        zarray = self.metadata.get(f"{name}/.zarray")
        if zarray is None:
            raise KeyError(f"{self.path} has no array {name!r}; arrays: {', '.join(self.array_names)}")
        return zarray

    def zattrs(self, name: str) -> dict[str, Any]:
        return self.metadata.get(f"{name}/.zattrs", {})

    def grid(self, name: str) -> ChunkGrid:
        return ChunkGrid.from_zarray(self.zarray(name))

    def record_file(self, name: str, k: int) -> Path:
        """Record file `k` of array `name` (Parquet)."""
        return self.path / name / f"refs.{k}.parq"

    def read_record(self, name: str, k: int, columns: list[str] | None = None, **options: Any) -> pa.Table:
        return read_parquet(self.record_file(name, k), columns=columns, **options)

    def references(self, name: str) -> ArrayReferences:
        """Every reference of array `name` as columns (see ArrayReferences)."""
        import pyarrow.compute as pc

        grid = self.grid(name)
        n_chunks = grid.n_chunks
        codes = np.full(n_chunks, -1, np.int32)
        offsets = np.zeros(n_chunks, np.int64)
        sizes = np.zeros(n_chunks, np.int64)
        files: dict[str, int] = {}
        refs_json = self.json_refs
        if refs_json is not None:
            prefix = name + "/"
            for key, ref in refs_json.items():
                if key.startswith(prefix) and not key.endswith((".zarray", ".zattrs")) and isinstance(ref, list):
                    number = grid.number(tuple(int(p) for p in key[len(prefix):].split(".")))
                    codes[number] = files.setdefault(ref[0], len(files))
                    offsets[number], sizes[number] = ref[1], ref[2]
            return ArrayReferences(codes, list(files), offsets, sizes)
        record_size = self.record_size or 0
        for k in range(math.ceil(n_chunks / record_size)):
            if not self.record_file(name, k).exists():
                continue
            table = self.read_record(name, k, columns=["path", "offset", "size"], read_dictionary=["path"])
            start = k * record_size
            stop = start + table.num_rows
            paths = table["path"].combine_chunks()
            if not isinstance(paths, pa.DictionaryArray):
                paths = paths.dictionary_encode()
            mapping = np.array([files.setdefault(p, len(files)) for p in paths.dictionary.to_pylist()] + [-1], np.int32)
            local = pc.fill_null(paths.indices, len(paths.dictionary)).to_numpy()
            codes[start:stop] = mapping[local]
            # A row without a file has null offset and size: 0, as a missing chunk.
            offsets[start:stop] = pc.fill_null(table["offset"], 0).to_numpy(zero_copy_only=False)
            sizes[start:stop] = pc.fill_null(table["size"], 0).to_numpy(zero_copy_only=False)
        return ArrayReferences(codes, list(files), offsets, sizes)

    def reference(self, name: str, key: tuple[int, ...]) -> ChunkReference:
        """The reference of one chunk of array `name`.

        Args:
            name: an array of the index.
            key: the chunk's indices, one per dimension.

        Returns:
            A ChunkReference: a file range, inline bytes, or neither (the chunk
            reads as the fill value).

        Raises:
            KeyError: no array `name`.
            IndexError: `key` lies outside the array's chunk grid.

        Example:
            >>> ref = KerchunkIndex.open("results/ghrsst-demo/index/ghrsst-demo.parq").reference(
            ...     "analysed_sst", (0, 0, 0))  # doctest: +SKIP
            >>> ref.path, ref.offset, ref.size  # doctest: +SKIP
        """
        grid = self.grid(name)
        if not grid.contains(key):
            raise IndexError(f"chunk {'.'.join(map(str, key))} is outside the chunk grid "
                             f"{'x'.join(map(str, grid.counts))} of {name}")
        if self.record_size is None:
            ref = self.document["refs"].get(f"{name}/{'.'.join(map(str, key))}")
            if ref is None:
                return ChunkReference()
            if isinstance(ref, str):
                return ChunkReference(raw_bytes=len(base64.b64decode(ref[7:])) if ref.startswith("base64:")
                                      else len(ref))
            return ChunkReference(ref[0], ref[1] if len(ref) > 1 else 0, ref[2] if len(ref) > 2 else None)
        number = grid.number(key)
        record_size = self.record_size
        if not self.record_file(name, number // record_size).exists():
            return ChunkReference()
        table = self.read_record(name, number // record_size)
        row = number % record_size
        if row >= table.num_rows:
            return ChunkReference()
        record = table.slice(row, 1).to_pylist()[0]
        if record["path"] is None:
            return ChunkReference(raw_bytes=len(record["raw"]) if record["raw"] is not None else None)
        return ChunkReference(record["path"], record["offset"], record["size"])

    def inline_values(self, name: str) -> np.ndarray:
        """The values of a single-chunk inline array (a coordinate)."""
        zarray = self.metadata[f"{name}/.zarray"]
        if self.record_size is None:
            ref = self.document["refs"][f"{name}/0"]
            raw = base64.b64decode(ref[7:]) if isinstance(ref, str) and ref.startswith("base64:") else ref.encode()
        else:
            raw = self.read_record(name, 0, columns=["raw"])["raw"][0].as_py()
        return np.frombuffer(raw, dtype=np.dtype(zarray["dtype"]))


def open_index(index: str | Path) -> KerchunkIndex:
    """Open a Kerchunk Parquet folder or Kerchunk JSON file for reading.

    Args:
        index: the index's path.

    Returns:
        A KerchunkIndex: `array_names`, `zarray(name)`, `zattrs(name)`,
        `references(name)` (every chunk's file, offset and size as columns),
        `reference(name, key)` (one chunk).

    Raises:
        ValueError: `index` is not a Kerchunk index (the message says why).

    Example:
        >>> index = open_index("results/ghrsst-demo/index/ghrsst-demo.parq")  # doctest: +SKIP
        >>> refs = index.references("analysed_sst")  # doctest: +SKIP
        >>> refs.files[refs.codes[0]], refs.offsets[0], refs.sizes[0]  # doctest: +SKIP
    """
    return KerchunkIndex.open(index)


def read_kerchunk_metadata(index: str | Path) -> dict[str, Any]:
    """The consolidated metadata of a Kerchunk Parquet folder or JSON file."""
    return KerchunkIndex.open(index).document


def lookup_reference(index: str | Path, array: str, key: tuple[int, ...]) -> ChunkReference:
    """The reference of one chunk of an index.

    Args:
        index: a Kerchunk Parquet folder or Kerchunk JSON file.
        array: the array's name.
        key: the chunk's indices, one per dimension.

    Returns:
        The chunk's ChunkReference (file range, inline bytes, or fill value).

    Example:
        >>> ref = lookup_reference("results/ghrsst-demo/index/ghrsst-demo.parq", "analysed_sst",
        ...                        (0, 1, 2))  # doctest: +SKIP
        >>> print(ref.path, ref.offset, ref.size)  # doctest: +SKIP
    """
    return KerchunkIndex.open(index).reference(array, key)


def read_inline_array(index: str | Path, name: str) -> np.ndarray:
    """The values of a single-chunk inline array (a coordinate) of an index."""
    return KerchunkIndex.open(index).inline_values(name)
