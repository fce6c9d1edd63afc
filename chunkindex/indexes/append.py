"""Appending new files to a Kerchunk Parquet index instead of rewriting it.

A daily archive grows by one file a day, at the end of its time axis. In C
order with time first, the new chunks' references come after every existing
one, so an append rewrites only each array's last, partly filled record file,
adds the new record files, extends the time coordinate and updates
`.zmetadata`. Every file is written under a temporary name and renamed, and
`.zmetadata` goes last: until then readers see the old shape, and the rows
they can reach are unchanged.

The index's state (the manifest rows it holds and a digest of the recipe)
is kept beside it. An append happens only when the new listing is the old
one plus files later in time, the recipe is unchanged, every new array lines
up with the index's (same chunks, codecs, attributes, coordinates) and the
index holds Kerchunk Parquet only; otherwise the caller rewrites the index.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chunkindex.atomic import commit, staging_path
from chunkindex.indexes.kerchunk import (
    KerchunkIndex,
    refs_record_batch,
    same_references,
    write_refs_table,
)
from chunkindex.model import ArraySpec, AssembledIndex, ChunkGrid
from chunkindex.recipe import Recipe
from chunkindex.tables import read_parquet, write_parquet

STATE_COLUMNS = ("path", "size", "etag", "last_modified", "variable", "time")
STATE_VERSION = "1"


class NotAppendable(Exception):
    """Why an index must be rewritten rather than appended to."""


def recipe_digest(recipe: Recipe) -> str:
    """A digest of everything in a recipe that shapes the index."""
    doc = dataclasses.asdict(recipe)
    for key in ("path", "validation", "benchmark", "description", "headers"):
        doc.pop(key, None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def write_state(path: str | Path, recipe: Recipe, manifest: pa.Table, header_format: int) -> None:
    """Record which files an index holds, and for which recipe."""
    state = manifest.select(list(STATE_COLUMNS)).replace_schema_metadata({
        b"chunkindex.state": STATE_VERSION.encode(), b"chunkindex.recipe": recipe_digest(recipe).encode(),
        b"chunkindex.header_format": str(header_format).encode(),
        b"chunkindex.record_size": str(recipe.output.record_size).encode()})
    write_parquet(state, path)


def appended_files(state_path: str | Path, index_path: str | Path, recipe: Recipe, manifest: pa.Table,
                   header_format: int) -> int:
    """How many files of `manifest` the index already holds, when the rest
    can be appended to it (at least one new file).

    Raises:
        NotAppendable: with the reason the index must be rewritten.
    """
    state_path, index_path = Path(state_path), Path(index_path)
    if not state_path.is_file() or not (index_path / ".zmetadata").is_file():
        raise NotAppendable("no previous index")
    if recipe.concat.dim is None or manifest["time"].null_count == manifest.num_rows:
        raise NotAppendable("the recipe does not concatenate files in time")
    state = read_parquet(state_path)
    meta = state.schema.metadata or {}
    expected = {b"chunkindex.state": STATE_VERSION, b"chunkindex.recipe": recipe_digest(recipe),
                b"chunkindex.header_format": str(header_format),
                b"chunkindex.record_size": str(recipe.output.record_size)}
    for key, value in expected.items():
        if meta.get(key, b"").decode() != value:
            raise NotAppendable(f"the index was written with another {key.decode().split('.')[1]}")
    held = state.num_rows
    if manifest.num_rows <= held:
        raise NotAppendable("no new files")
    old, new = state.select(list(STATE_COLUMNS)), manifest.slice(0, held).select(list(STATE_COLUMNS))
    if not old.equals(new.cast(old.schema)):
        if old["path"].equals(new["path"]):
            raise NotAppendable("files the index holds changed (size, etag or modification time)")
        if pc.all(pc.is_in(old["path"], manifest["path"])).as_py():
            raise NotAppendable("new files fall inside the time axis, not after it")
        raise NotAppendable("files the index holds moved or went away")
    last_time = pc.max(old["time"]).as_py()
    first_new = pc.min(manifest.slice(held)["time"]).as_py()
    if last_time is None or first_new is None or first_new <= last_time:
        raise NotAppendable("new files fall inside the time axis, not after it")
    return held


def _plain(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """References with `path` as plain strings (to join old and new rows)."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    index = table.schema.get_field_index("path")
    return table.set_column(index, "path", table["path"].cast(pa.string()))


def append_to_index(index_path: str | Path, assembled: AssembledIndex, time_dim: str,
                    record_size: int, held_files: int, files: int) -> dict[str, Any]:
    """Append the arrays of the new files (`assembled`, time-first) to the
    Kerchunk Parquet index at `index_path`; returns per-array counts.

    Raises:
        NotAppendable: an array or coordinate does not line up with the index
            (nothing has been changed then).
    """
    index_path = Path(index_path)
    index = KerchunkIndex.open(index_path)
    doc = index.document
    metadata: dict[str, Any] = doc["metadata"]
    if metadata.get(".zattrs", {}).get("chunkindex_files") != held_files:
        raise NotAppendable("the index and its state record disagree (an interrupted update?)")
    old_names = {key.rsplit("/", 1)[0] for key in metadata if key.endswith("/.zarray")}
    new_names = {a.name for a in assembled.arrays}
    if old_names != new_names:
        raise NotAppendable(f"the new files give arrays {sorted(new_names ^ old_names)} that the index "
                            "does not have, or lack some it has")
    plans: list[tuple[ArraySpec, dict[str, Any]]] = []
    for array in assembled.arrays:
        old = metadata[f"{array.name}/.zarray"]
        new = array.zarray()
        if array.inline is not None:
            if array.dims != (time_dim,) and index.inline_values(array.name).tobytes() != array.inline:
                raise NotAppendable(f"coordinate {array.name} differs from the index's")
            plans.append((array, old))
            continue
        if array.dims[0] != time_dim:
            raise NotAppendable(f"{array.name}: {time_dim} is not its first dimension")
        if old["shape"][0] % old["chunks"][0]:
            raise NotAppendable(f"{array.name}: its last {time_dim} chunk is partly filled")
        if {**old, "shape": None} != {**new, "shape": None} or list(old["shape"][1:]) != list(new["shape"][1:]):
            raise NotAppendable(f"{array.name}: the new files' layout or codecs differ from the index's")
        if json.dumps(metadata[f"{array.name}/.zattrs"], sort_keys=True) != json.dumps(array.zattrs(), sort_keys=True):
            raise NotAppendable(f"{array.name}: the new files' attributes differ from the index's")
        plans.append((array, old))

    staged: list[tuple[Path, Path]] = []  # (temporary, final)
    counts: dict[str, dict[str, int]] = {}
    written: dict[str, ArraySpec] = {}
    try:
        for array, old in plans:
            folder = index_path / array.name
            if array.inline is not None:
                if array.dims == (time_dim,):
                    values = np.concatenate([index.inline_values(array.name),
                                             np.frombuffer(array.inline, dtype=np.dtype(array.dtype))])
                    grown = dataclasses.replace(array, shape=(values.size,), chunks=(values.size,),
                                                inline=values.astype(array.dtype).tobytes())
                    temporary = staging_path(folder / "refs.0.parq", "append")
                    write_refs_table(refs_record_batch(grown, 0, 1), temporary)
                    staged.append((temporary, folder / "refs.0.parq"))
                    metadata[f"{array.name}/.zarray"] = grown.zarray()
                continue
            held = ChunkGrid.from_zarray(old).n_chunks
            new_chunks = array.n_chunks
            twin = next((w for w in written.values() if same_references(array, w)), None)
            urls = pa.array(array.urls, pa.string())
            first_record = held // record_size
            last_record = (held + new_chunks - 1) // record_size
            for k in range(first_record, last_record + 1):
                final = folder / f"refs.{k}.parq"
                temporary = staging_path(final, "append")
                if twin is not None:
                    source = next(t for t, f in staged if f == index_path / twin.name / final.name)
                    os.link(source, temporary)
                else:
                    start, stop = max(k * record_size, held), min((k + 1) * record_size, held + new_chunks)
                    new_rows = _plain(refs_record_batch(array, start - held, stop - held, urls))
                    if k * record_size < held:  # the partly filled record file: keep its rows
                        kept = index.read_record(array.name, k).slice(0, held - k * record_size)
                        new_rows = pa.concat_tables([_plain(kept), new_rows])
                    write_refs_table(new_rows, temporary)
                staged.append((temporary, final))
            written[array.name] = array
            shape = [old["shape"][0] + array.shape[0], *old["shape"][1:]]
            metadata[f"{array.name}/.zarray"] = {**old, "shape": shape}
            counts[array.name] = {"refs": held + new_chunks, "new_refs": new_chunks, "new_missing": array.n_missing}
        root = metadata.setdefault(".zattrs", {})
        root["chunkindex_files"] = files
        for key, extra in (("chunkindex_notes", assembled.notes), ("chunkindex_skipped_files", assembled.skipped_files)):
            root[key] = list(dict.fromkeys([*root.get(key, []), *extra]))
        temporary_meta = staging_path(index_path / ".zmetadata", "append")
        temporary_meta.write_text(json.dumps(doc, separators=(",", ":")))
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, final in staged:
        commit(temporary, final)
    commit(temporary_meta, index_path / ".zmetadata")  # last: readers now see the new shape
    return counts
