"""The flat reference table: one Parquet row per chunk with data (array,
chunk number, key, path, offset, size), written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chunkindex.atomic import atomic_path
from chunkindex.model import ArraySpec

FLAT_SCHEMA = pa.schema([
    ("array", pa.string()),
    ("chunk_number", pa.int64()),
    ("key", pa.string()),
    ("path", pa.string()),
    ("offset", pa.int64()),
    ("size", pa.int64()),
])


def write_flat_parquet(arrays: list[ArraySpec], target: str | Path) -> Path:
    """One table of every chunk reference with data (array, key, path, offset, size)."""
    target = Path(target)
    with atomic_path(target) as staging, \
            pq.ParquetWriter(staging, FLAT_SCHEMA, compression="zstd", use_dictionary=["array", "path"]) as writer:
        names = pa.array([a.name for a in arrays], pa.string())
        for position, array in enumerate(arrays):
            if array.inline is not None:
                continue
            present = np.flatnonzero(array.url_index >= 0)
            n = present.size
            keys = pa.array(array.grid.keys(present), pa.string())
            batch = pa.record_batch([
                pa.DictionaryArray.from_arrays(pa.array(np.full(n, position, np.int32)), names).dictionary_decode(),
                pa.array(present.astype(np.int64)),
                keys,
                pa.DictionaryArray.from_arrays(pa.array(array.url_index[present]),
                                               pa.array(array.urls, pa.string())).dictionary_decode(),
                pa.array(array.offsets[present]),
                pa.array(array.sizes[present]),
            ], schema=FLAT_SCHEMA)
            writer.write_batch(batch)
    return target
