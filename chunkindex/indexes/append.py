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
    """References with `path` as plain strings and the writer's nullability
    (to join old and new rows, whichever chunkindex wrote the old ones)."""
    from chunkindex.indexes.kerchunk import REQUIRED_COLUMNS

    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    index = table.schema.get_field_index("path")
    table = table.set_column(index, "path", table["path"].cast(pa.string()))
    schema = pa.schema([f.with_nullable(f.name not in REQUIRED_COLUMNS) for f in table.schema])
    return pa.Table.from_arrays(table.columns, schema=schema)


def plan_append(index: KerchunkIndex, assembled: AssembledIndex, time_dim: str,
                held_files: int) -> list[tuple[ArraySpec, dict[str, Any]]]:
    """Check that the new files' arrays line up with the index: (array, its
    .zarray in the index) for each; nothing is written.

    Raises:
        NotAppendable: an array or coordinate does not line up with the index.
    """
    metadata: dict[str, Any] = index.document["metadata"]
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
    return plans


def _stage_coordinate(index: KerchunkIndex, array: ArraySpec, staged: list[tuple[Path, Path]]) -> dict[str, Any]:
    """Stage the grown time coordinate (one inline record); returns its new .zarray."""
    folder = index.path / array.name
    values = np.concatenate([index.inline_values(array.name), np.frombuffer(array.inline or b"",
                                                                             dtype=np.dtype(array.dtype))])
    grown = dataclasses.replace(array, shape=(values.size,), chunks=(values.size,),
                                inline=values.astype(array.dtype).tobytes())
    temporary = staging_path(folder / "refs.0.parq", "append")
    write_refs_table(refs_record_batch(grown, 0, 1), temporary)
    staged.append((temporary, folder / "refs.0.parq"))
    return grown.zarray()


def _stage_array(index: KerchunkIndex, array: ArraySpec, old: dict[str, Any], record_size: int,
                 twin: ArraySpec | None, staged: list[tuple[Path, Path]]) -> dict[str, int]:
    """Stage the record files an array's new chunks go to: the partly filled
    last one rewritten with its old rows kept, and new ones after it (hard
    links of its twin's when it shares their references). Returns its counts."""
    folder = index.path / array.name
    held = ChunkGrid.from_zarray(old).n_chunks
    new_chunks = array.n_chunks
    urls = pa.array(array.urls, pa.string())
    for k in range(held // record_size, (held + new_chunks - 1) // record_size + 1):
        final = folder / f"refs.{k}.parq"
        temporary = staging_path(final, "append")
        if twin is not None:
            source = next(t for t, f in staged if f == index.path / twin.name / final.name)
            os.link(source, temporary)
        else:
            start, stop = max(k * record_size, held), min((k + 1) * record_size, held + new_chunks)
            new_rows = _plain(refs_record_batch(array, start - held, stop - held, urls))
            if k * record_size < held:  # the partly filled record file: keep its rows
                kept = index.read_record(array.name, k).slice(0, held - k * record_size)
                new_rows = pa.concat_tables([_plain(kept), new_rows])
            write_refs_table(new_rows, temporary)
        staged.append((temporary, final))
    return {"refs": held + new_chunks, "new_refs": new_chunks, "new_missing": array.n_missing}


def append_to_index(index_path: str | Path, assembled: AssembledIndex, time_dim: str,
                    record_size: int, held_files: int, files: int) -> dict[str, dict[str, int]]:
    """Append the arrays of the new files (`assembled`, time-first) to the
    Kerchunk Parquet index at `index_path`: plan (every check), stage (every
    changed file under a temporary name), commit (renames, `.zmetadata` last,
    so readers see the new shape only once every reference is in place).

    Args:
        index_path: the Kerchunk Parquet folder.
        assembled: the new files' arrays.
        time_dim: the dimension they extend.
        record_size: references per record file (the index's).
        held_files: files the index holds now (its `chunkindex_files`).
        files: files it holds after the append.

    Returns:
        Array name -> {"refs", "new_refs", "new_missing"}.

    Raises:
        NotAppendable: an array or coordinate does not line up with the index
            (nothing has been changed then).
    """
    index = KerchunkIndex.open(Path(index_path))
    plans = plan_append(index, assembled, time_dim, held_files)
    doc = index.document
    metadata: dict[str, Any] = doc["metadata"]
    staged: list[tuple[Path, Path]] = []  # (temporary, final)
    counts: dict[str, dict[str, int]] = {}
    written: list[ArraySpec] = []
    try:
        for array, old in plans:
            if array.inline is not None:
                if array.dims == (time_dim,):
                    metadata[f"{array.name}/.zarray"] = _stage_coordinate(index, array, staged)
                continue
            twin = next((w for w in written if same_references(array, w)), None)
            counts[array.name] = _stage_array(index, array, old, record_size, twin, staged)
            written.append(array)
            metadata[f"{array.name}/.zarray"] = {**old, "shape": [old["shape"][0] + array.shape[0],
                                                                 *old["shape"][1:]]}
        root = metadata.setdefault(".zattrs", {})
        root["chunkindex_files"] = files
        for key, extra in (("chunkindex_notes", assembled.notes), ("chunkindex_skipped_files", assembled.skipped_files)):
            root[key] = list(dict.fromkeys([*root.get(key, []), *extra]))
        temporary_meta = staging_path(index.path / ".zmetadata", "append")
        temporary_meta.write_text(json.dumps(doc, separators=(",", ":")))
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, final in staged:
        commit(temporary, final)
    commit(temporary_meta, index.path / ".zmetadata")  # last: readers now see the new shape
    return counts
