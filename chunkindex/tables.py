"""Reading and writing the workflow's intermediate Arrow tables.

Manifests and batches are Parquet; header/chunk tables are Arrow IPC (see
`write_chunk_table`). `pq.read_table` goes through `pyarrow.dataset`, whose
import pulls in pandas (~0.35 s per job); a single file needs neither.
Writes are atomic (chunkindex.atomic), so a failed step never
leaves a half-written table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc
import pyarrow.parquet as pq

from chunkindex.atomic import atomic_path


def read_parquet(path: str | Path, columns: Sequence[str] | None = None, **options: Any) -> pa.Table:
    """One Parquet file as a table (optionally only `columns`)."""
    return pq.ParquetFile(path, **options).read(columns=columns)


def write_parquet(table: pa.Table, path: str | Path, **options: Any) -> None:
    """Write `table` to `path` atomically (temporary file, then rename)."""
    with atomic_path(path) as staging:
        pq.write_table(table, staging, **options)


DIGEST_KEY = b"chunkindex.sha256"


class HeaderCacheError(ValueError):
    """A header/chunk table that cannot be read back as it was written."""


class _Hashing:
    """A write-only file that only hashes what is written to it."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def chunk_table_digest(table: pa.Table) -> str:
    """SHA-256 of `table` serialized as an Arrow IPC stream (without its
    digest key): the same for a table and the table read back from its file,
    since writing normalises it (offsets, empty validity buffers) once."""
    metadata = {k: v for k, v in (table.schema.metadata or {}).items() if k != DIGEST_KEY}
    table = table.replace_schema_metadata(metadata)
    sink = _Hashing()
    with pa.PythonFile(sink, mode="w") as stream, pa.ipc.new_stream(stream, table.schema) as writer:
        writer.write_table(table)
    return sink.hash.hexdigest()


def write_chunk_table(table: pa.Table, path: str | Path) -> None:
    """Write a header/chunk table as an uncompressed Arrow IPC file (atomically).

    These tables are a cache between the header and write steps, and the
    write step reads every batch whole: memory-mapped IPC hands it the tile
    tables (~16 bytes per tile; 480 MB for the 8,660 GHRSST files) with no
    decoding or copy, where decoding Parquet took 0.4-1.0 s of that step.
    Arrow IPC has no checksum, so the table's digest goes into its schema
    metadata (DIGEST_KEY), checked when it is read (`read_chunk_table`).
    """
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           DIGEST_KEY: chunk_table_digest(table).encode()})
    with atomic_path(path) as staging, pa.OSFile(str(staging), "wb") as sink, \
            pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def read_chunk_table(path: str | Path, columns: Sequence[str] | None = None) -> pa.Table:
    """A header/chunk table, memory-mapped (optionally only `columns`),
    checked against the digest recorded when it was written (tables written
    before digests were recorded are not checked).

    Raises:
        HeaderCacheError: the file is torn or its bytes changed since it was
            written (a disk or copy fault): the headers step must run again.
    """
    try:
        table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        recorded = (table.schema.metadata or {}).get(DIGEST_KEY)
        damaged = recorded is not None and recorded.decode() != chunk_table_digest(table)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise HeaderCacheError(f"{path}: unreadable header table ({exc}); damaged? rerun the headers step "
                               "(--forcerun headers)") from None
    if damaged:
        raise HeaderCacheError(f"{path}: the header table is damaged (its contents no longer match the digest "
                               "recorded when it was written): rerun the headers step (--forcerun headers)")
    return table.select(list(columns)) if columns is not None else table


def chunk_table_metadata(path: str | Path) -> dict[bytes, bytes]:
    """The schema metadata of a header/chunk table (format version, timings)."""
    return dict(pa.ipc.open_file(pa.memory_map(str(path))).schema.metadata or {})


def read_rows_from(path: str | Path, column: str, minimum: int) -> pa.Table:
    """The rows of a header/chunk table whose integer `column` is >= `minimum`."""
    table = read_chunk_table(path)
    return table.filter(pc.greater_equal(table[column], minimum))
