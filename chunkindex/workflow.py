"""The workflow's steps and rule helpers: file-based steps the Snakemake
scripts call (list, headers, write or append, validate), the names of the
write rule's outputs and the header batches of a listing.

Only scripts/, rules/, tests and benchmarks import this module; the library
(chunkindex.pipeline and below) never does. Process-level tweaks of the
Snakemake jobs live in scripts/_step.py.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from chunkindex.atomic import leftovers, write_text
from chunkindex.formats import HEADER_FORMAT_VERSION, extractor_for
from chunkindex.pipeline import (
    WriteSummary,
    output_paths,
    progress_logger,
    store_spec,
    timed,
    validate_recipe_index,
    write_assembled,
    write_index,
)
from chunkindex.recipe import Recipe, load_recipe
from chunkindex.tables import (
    chunk_table_metadata,
    read_chunk_table,
    read_parquet,
    read_rows_from,
    write_chunk_table,
    write_parquet,
)

if TYPE_CHECKING:
    from chunkindex.indexes.sharded import WritePlan
    from chunkindex.validate import ValidationReport

log = logging.getLogger("chunkindex")
BATCH_FORMAT = "{:05d}"
SHARD_FORMAT = "{:05d}"  # write_shard job numbers


def index_outputs(results: str, dataset: str, recipe: Recipe) -> dict[str, str]:
    """Named outputs of the write rule, by the recipe's output kinds (plus summary and state).

    A recipe that asks for no Kerchunk index still gets a Kerchunk Parquet
    one, under `validation/`: GDAL's Zarr driver validates the arrays through
    it (validation's report says so)."""
    outputs = output_paths(f"{results}/index", dataset, recipe.output.kinds, recipe.format)
    if not {"kerchunk_parquet", "kerchunk_json"} & set(outputs):
        outputs["kerchunk_parquet"] = f"{results}/validation/{dataset}.parq"
    outputs["state"] = f"{results}/index/{dataset}.state.parquet"
    return outputs


def snakemake_backup_path(output: str | Path, persistence_dir: str | Path) -> Path:
    """Where Snakemake (9.x, `persistence.backup_output`) keeps the copy of an
    update() output while the job that updates it runs."""
    output = Path(output)
    if output.is_absolute():
        output = output.relative_to(output.anchor)
    return Path(persistence_dir) / "backups" / output


def clear_interrupted_write(update_outputs: list[str], outputs: list[str],
                            persistence_dir: str | Path) -> list[str]:
    """Remove what a killed write step left behind; returns what was removed.

    Run at workflow start (`onstart`, the output lock held, so no write job of
    this index is running). Snakemake copies each update() output to
    `.snakemake/backups/<path>` before the job and deletes the copy when the
    job ends; after a kill -9 the copy stays and every later run fails with
    `FileExistsError` when it backs the output up again. The copies are
    dropped rather than restored: one caught half-written would be worse
    than the index itself, which the write step checks against its state
    record (a half-done append no longer matches it and the index is
    rewritten in full). The write step's own temporary files and folders
    (`chunkindex.atomic.leftovers`) are removed with them.
    """
    removed: list[str] = []

    def remove(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        removed.append(str(path))

    for output in update_outputs:
        backup = snakemake_backup_path(output, persistence_dir)
        if backup.exists() or backup.is_symlink():
            remove(backup)
    for output in outputs:
        for leftover in leftovers(output):
            remove(leftover)
    return removed


def batch_ids(manifest: str | Path) -> list[str]:
    """Batch ids of a listing, from the batch count stored in its metadata."""
    meta = pq.read_schema(manifest).metadata or {}
    count = int(meta.get(b"chunkindex.batches", b"0"))
    return [BATCH_FORMAT.format(i) for i in range(count)]


def write_batches(manifest: pa.Table, folder: str | Path, batch_size: int) -> int:
    """Split `manifest` into batch files of `batch_size` rows.

    A batch file is rewritten only when its rows changed (path, size, etag,
    last-modified are the cache key), so Snakemake re-runs only its header job.
    Returns the number of batches.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    count = (manifest.num_rows + batch_size - 1) // batch_size
    for i in range(count):
        batch = manifest.slice(i * batch_size, batch_size)
        path = folder / f"batch-{BATCH_FORMAT.format(i)}.parquet"
        if path.exists():
            try:
                if read_parquet(path).equals(batch):
                    continue
            except (pa.ArrowInvalid, OSError):
                pass
        write_parquet(batch, path)
    for stale in folder.glob("batch-*.parquet"):
        if int(stale.stem.split("-")[1]) >= count:
            stale.unlink()
    return count


def with_batch_count(table: pa.Table, count: int) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta[b"chunkindex.batches"] = str(count).encode()
    return table.replace_schema_metadata(meta)


RECIPE_KEY = b"chunkindex.recipe"


def _with_recipe(table: pa.Table, recipe: Recipe) -> pa.Table:
    """`table` stamped with the digest of the recipe it was made from."""
    from chunkindex.indexes.append import recipe_digest

    return table.replace_schema_metadata({**(table.schema.metadata or {}), RECIPE_KEY: recipe_digest(recipe).encode()})


def check_same_recipe(recipe_path: str, recipe: Recipe, made_from: dict[str, bytes | None]) -> None:
    """Refuse inputs made from another version of the recipe (edited while the
    workflow ran: Snakemake reruns every step of an edited recipe, but only
    in the next run). `made_from` maps an input's path to its stamp."""
    from chunkindex.indexes.append import recipe_digest

    digest = recipe_digest(recipe).encode()
    for path, stamp in made_from.items():
        if stamp is not None and stamp != digest:
            raise ValueError(f"{path} was made from another version of {recipe_path}, edited while the "
                             "workflow ran: run the workflow again (the edited recipe reruns every step)")


def list_step(recipe_path: str, base_dir: str, manifest_out: str, batches_dir: str) -> pa.Table:
    from chunkindex.sources.listing import list_sources

    recipe = load_recipe(recipe_path)
    spec = store_spec(recipe, base_dir)
    start = time.perf_counter()
    manifest = list_sources(recipe, spec)
    count = write_batches(manifest, batches_dir, recipe.headers.batch_size)
    manifest = _with_recipe(with_batch_count(manifest, count), recipe)
    write_parquet(manifest, manifest_out)
    log.info("listed %d files (%d bytes) from %s in %.2f s; %d header batches",
             manifest.num_rows, sum(manifest["size"].to_pylist()), spec.url,
             time.perf_counter() - start, count)
    return manifest


def headers_step(recipe_path: str, base_dir: str, batch_path: str, levels_out: str) -> pa.Table:
    recipe = load_recipe(recipe_path)
    batch = read_parquet(batch_path)
    extractor = extractor_for(recipe.format)
    start = time.perf_counter()
    table = extractor.read_batch(recipe, store_spec(recipe, base_dir), batch,
                                 progress_logger(log, f"headers {Path(batch_path).stem}"))
    elapsed = time.perf_counter() - start
    meta = {b"chunkindex.seconds": str(elapsed).encode(), b"chunkindex.files": str(batch.num_rows).encode(),
            b"chunkindex.header_format": str(HEADER_FORMAT_VERSION).encode()}
    table = _with_recipe(table.replace_schema_metadata({**(table.schema.metadata or {}), **meta}), recipe)
    write_chunk_table(table, levels_out)
    log.info("read %d headers in %.2f s (%.0f files/s)", batch.num_rows, elapsed,
             batch.num_rows / max(elapsed, 1e-9))
    return table


def check_header_batches(recipe_path: str, recipe: Recipe, manifest_path: str, header_paths: list[str]) -> pa.Table:
    """Refuse header batches of another header format, or inputs made from
    another version of the recipe; returns the listing."""
    if not header_paths:
        raise ValueError(f"recipe {recipe.id}: no header batches to write an index from")
    stamps: dict[str, bytes | None] = {}
    for path in header_paths:
        try:
            metadata = chunk_table_metadata(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{path}: unreadable header table ({exc}); damaged? rerun with "
                             "--forcerun headers") from None
        found = metadata.get(b"chunkindex.header_format", b"1").decode()
        if found != str(HEADER_FORMAT_VERSION):
            raise ValueError(f"{path} was written by another chunkindex version (header format {found}, "
                             f"this one reads {HEADER_FORMAT_VERSION}): rerun with --forcerun headers")
        stamps[path] = metadata.get(RECIPE_KEY)
    manifest = read_parquet(manifest_path)
    stamps[manifest_path] = (manifest.schema.metadata or {}).get(RECIPE_KEY)
    check_same_recipe(recipe_path, recipe, stamps)
    return manifest


def _append_candidate(outputs: dict[str, str]) -> bool:
    """Whether the outputs are kinds an append can update."""
    return ("state" in outputs and "kerchunk_parquet" in outputs
            and set(outputs) <= {"kerchunk_parquet", "cri_parquet", "summary", "state"})


def plan_step(recipe_path: str, manifest_path: str, header_paths: list[str], outputs: dict[str, str],
              shard_refs: int, plan_out: str) -> WritePlan:
    """Decide how the write step runs (the plan_write checkpoint): append the
    new files when the index allows, else write it whole from shards of
    about `shard_refs` references (chunkindex.indexes.sharded.plan_shards)."""
    from chunkindex.indexes.append import NotAppendable, appended_files
    from chunkindex.indexes.sharded import WritePlan, batch_references, plan_shards, write_plan

    recipe = load_recipe(recipe_path)
    manifest = check_header_batches(recipe_path, recipe, manifest_path, header_paths)
    refs = [batch_references(p) for p in header_paths]
    if _append_candidate(outputs):
        try:
            held = appended_files(outputs["state"], outputs["kerchunk_parquet"], recipe, manifest,
                                  HEADER_FORMAT_VERSION)
            plan = WritePlan("append", (), sum(refs), f"append files {held}: to the index")
            write_plan(plan, plan_out)
            log.info("write plan: %s", plan.reason)
            return plan
        except NotAppendable as why:
            reason = f"writing the whole index ({why})"
    else:
        reason = "writing the whole index"
    shards = plan_shards(manifest["time"].to_numpy(zero_copy_only=False), recipe.headers.batch_size, refs,
                         shard_refs)
    for number, count in enumerate(refs):
        if count > shard_refs:  # a shard is at least one batch: its job holds all of it
            log.warning("header batch %d holds %d references, more than write.shard_refs (%d): its shard job "
                        "needs about %.1f GB; lower the recipe's headers.batch_size", number, count, shard_refs,
                        count * 45 / 1e9)
    plan = WritePlan("write", tuple(shards), sum(refs), reason)
    write_plan(plan, plan_out)
    log.info("write plan: %s: %d references in %d shards of up to %d references", reason, plan.references,
             len(shards), shard_refs)
    return plan


def write_shard_step(recipe_path: str, manifest_path: str, plan_path: str, shard_number: int,
                     header_paths: list[str], folder: str) -> None:
    """Assemble one shard of the plan from its header batches alone and save
    it for the combine step (chunkindex.indexes.sharded.write_shard)."""
    from chunkindex.indexes.sharded import WritePlan, grid_rows, shard_headers, write_shard

    recipe = load_recipe(recipe_path)
    plan = WritePlan.read(plan_path)
    if not 0 <= shard_number < len(plan.shards):
        raise ValueError(f"{plan_path} has {len(plan.shards)} shards, not a shard {shard_number}: rerun the "
                         "workflow (the plan changed)")
    shard = plan.shards[shard_number]
    manifest = check_header_batches(recipe_path, recipe, manifest_path, header_paths)
    for leftover in leftovers(folder):  # a killed run of this very job
        shutil.rmtree(leftover, ignore_errors=True)
    timings: dict[str, float] = {}
    with timed(timings, "read_headers"):
        headers = shard_headers(header_paths, shard)
    block = manifest.slice(shard.first_row, shard.end_row - shard.first_row)
    with timed(timings, "assemble"):
        assembled = extractor_for(recipe.format).assemble(recipe, block, headers)
    grids = grid_rows(headers)
    del headers
    with timed(timings, "save"):
        write_shard(assembled, folder, block["url"][0].as_py(), grids)
    log.info("shard %d: files %d-%d (%d header batches), %d references: %s", shard_number, shard.first_row,
             shard.end_row - 1, len(shard.batches), sum(a.n_chunks for a in assembled.arrays if a.inline is None),
             ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))


def write_step(recipe_path: str, manifest_path: str, header_paths: list[str], outputs: dict[str, str],
               threads: int, plan_path: str | None = None, shard_folders: list[str] | None = None) -> WriteSummary:
    """Write the index, or append the new files to it when it allows (see
    chunkindex.indexes.append); `outputs["state"]` records which files the
    index holds. `threads` is the rule's (Snakemake `threads`).

    With a plan (`plan_step`) in mode `write`, the index is combined from
    the shards in `shard_folders` (`write_shard_step`): the Kerchunk Parquet
    record files stream from the shards' columns. Without one, every header
    batch is read at once (the single-job write).
    """
    from chunkindex.indexes.append import NotAppendable, appended_files, write_state
    from chunkindex.indexes.sharded import WritePlan

    recipe = load_recipe(recipe_path)
    manifest = check_header_batches(recipe_path, recipe, manifest_path, header_paths)
    state = outputs.get("state")
    plan = WritePlan.read(plan_path) if plan_path else None
    if plan is None or plan.mode == "append":
        if state and _append_candidate(outputs):
            try:
                held = appended_files(state, outputs["kerchunk_parquet"], recipe, manifest, HEADER_FORMAT_VERSION)
                return append_step(recipe, manifest, held, header_paths, outputs)
            except NotAppendable as why:
                if plan is not None:
                    # The index changed since the plan (an append killed half-way):
                    # without shards, the whole index is written in this job.
                    log.warning("the plan's append is no longer possible (%s): writing the whole index in "
                                "one job", why)
                else:
                    log.info("writing the whole index (%s)", why)
    if state:
        Path(state).unlink(missing_ok=True)  # until the new index is complete
    if plan is not None and plan.mode == "write":
        summary = combine_step(recipe, manifest, shard_folders or [], outputs, threads)
    else:
        summary = _single_job_write(recipe, manifest, header_paths, outputs, threads, plan)
    if state:
        write_state(state, recipe, manifest, HEADER_FORMAT_VERSION)
    return summary


def _single_job_write(recipe: Recipe, manifest: pa.Table, header_paths: list[str], outputs: dict[str, str],
                      threads: int, plan: WritePlan | None) -> WriteSummary:
    from chunkindex.indexes.sharded import IN_MEMORY_MAX_REFS, in_memory_refusal

    if plan is not None and plan.references > IN_MEMORY_MAX_REFS:
        raise ValueError(f"recipe {recipe.id}: the index changed since its write plan and {plan.references:,} "
                         f"references are too many to write in one job (limit {IN_MEMORY_MAX_REFS:,}): run the "
                         "workflow again with --forcerun plan_write")
    refusal = in_memory_refusal(outputs, plan.references) if plan is not None else None
    if refusal:
        raise ValueError(f"recipe {recipe.id}: {refusal}")
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:  # decoding releases the GIL
        headers = pa.concat_tables(list(pool.map(read_chunk_table, header_paths)))
    log.info("read %d header batches (%d rows) in %.2f s", len(header_paths), headers.num_rows,
             time.perf_counter() - start)
    return write_index(recipe, manifest, headers, outputs, threads=threads)


def combine_step(recipe: Recipe, manifest: pa.Table, shard_folders: list[str], outputs: dict[str, str],
                 threads: int) -> WriteSummary:
    """Write every index kind from the shards (chunkindex.indexes.sharded)."""
    from chunkindex.indexes.sharded import (
        STREAMED_KINDS,
        CriStream,
        KerchunkStream,
        combine_shards,
        combined_grids,
        in_memory_refusal,
        load_columns,
    )

    timings: dict[str, float] = {}
    with timed(timings, "combine"):
        combined = combine_shards(shard_folders, recipe.concat.dim, time_notes=recipe.format != "cog")
    refusal = in_memory_refusal(outputs, combined.references)
    if refusal:
        raise ValueError(f"recipe {recipe.id}: {refusal}")
    if set(outputs) - STREAMED_KINDS:
        with timed(timings, "load_columns"):
            load_columns(combined)
    log.info("combined %d shards: %d references in %d arrays", len(shard_folders), combined.references,
             len(combined.assembled.arrays))
    return write_assembled(recipe, manifest, combined.assembled, outputs, threads=threads, timings=timings,
                           kerchunk_parquet_writer=KerchunkStream(combined), cri_parquet_writer=CriStream(combined),
                           headers=combined_grids(shard_folders) if "coverage_gti" in outputs else None)


def append_step(recipe: Recipe, manifest: pa.Table, held: int, header_paths: list[str],
                outputs: dict[str, str]) -> WriteSummary:
    """Append files `held:` of `manifest` to the index (raises NotAppendable
    before changing anything when they do not line up with it)."""
    from chunkindex.indexes.append import append_to_index, write_state

    timings: dict[str, float] = {}
    new_files = manifest.slice(held)
    with timed(timings, "read_headers"):
        headers = pa.concat_tables([read_rows_from(p, "file_id", held) for p in header_paths])
    with timed(timings, "assemble"):
        assembled = extractor_for(recipe.format).assemble(recipe, new_files, headers)
    if "cri_parquet" in outputs:  # first: all or nothing, before the Kerchunk index changes
        from chunkindex.indexes.flat import append_cri_parquet

        with timed(timings, "append_cri"):
            append_cri_parquet(outputs["cri_parquet"], assembled, new_files, recipe.concat.dim)
    with timed(timings, "append"):
        counts = append_to_index(outputs["kerchunk_parquet"], assembled, recipe.concat.dim,
                                 recipe.output.record_size, held, manifest.num_rows)
    before = (WriteSummary.read(outputs["summary"]) if Path(outputs["summary"]).is_file()
              else WriteSummary(0, [], {}, [], [], {}, {}, {}))
    refs_per_array = {**before.refs_per_array, **{k: v["refs"] for k, v in counts.items()}}
    summary = dataclasses.replace(
        before, refs=sum(refs_per_array.values()), refs_per_array=refs_per_array, timings=timings,
        missing_per_array={**before.missing_per_array,
                           **{k: before.missing_per_array.get(k, 0) + v["new_missing"] for k, v in counts.items()}},
        notes=list(dict.fromkeys([*before.notes, *assembled.notes])),
        skipped_files=[*before.skipped_files, *assembled.skipped_files],
        appended_files=new_files.num_rows)
    write_text(outputs["summary"], summary.to_json())
    write_state(outputs["state"], recipe, manifest, HEADER_FORMAT_VERSION)
    log.info("appended %d files (%d references) to %s: %s", new_files.num_rows,
             sum(v["new_refs"] for v in counts.values()), outputs["kerchunk_parquet"],
             ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    return summary


def validate_step(recipe_path: str, index_path: str, report_out: str, cri_path: str | None = None) -> ValidationReport:
    from chunkindex.validate import ValidationFailed

    def record(report: ValidationReport) -> None:
        write_text(report_out, report.to_json())
        for line in report.summary().splitlines():
            log.info("%s", line)

    recipe = load_recipe(recipe_path)
    try:
        report = validate_recipe_index(recipe, index_path, cri_path or None)
        if not {"kerchunk-parquet", "kerchunk-json"} & set(recipe.output.kinds):
            report.notes.append(f"the recipe writes no Kerchunk index ({', '.join(recipe.output.kinds)}); validation "
                                f"checked the same arrays through a Kerchunk Parquet index written for it ({index_path})")
    except ValidationFailed as failed:
        record(failed.report)  # the log names every mismatch
        raise
    record(report)
    return report
