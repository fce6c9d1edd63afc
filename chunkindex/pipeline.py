"""The workflow's steps as plain functions (the Snakemake scripts call these)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from chunkindex.extract import HEADER_FORMAT_VERSION, extractor_for
from chunkindex.recipe import Recipe, load_recipe
from chunkindex.stores import StoreSpec, resolve_local
from chunkindex.tables import (
    chunk_table_metadata,
    read_chunk_table,
    read_parquet,
    write_chunk_table,
    write_parquet,
)
from chunkindex.workflow import progress_logger, with_batch_count, write_batches

log = logging.getLogger("chunkindex")


def store_spec(recipe: Recipe, base_dir: str | Path) -> StoreSpec:
    return StoreSpec(resolve_local(recipe.source.url, base_dir), dict(recipe.source.store_options),
                     recipe.source.public_url)


def list_step(recipe_path: str, base_dir: str, manifest_out: str, batches_dir: str) -> pa.Table:
    from chunkindex.listing import list_sources

    recipe = load_recipe(recipe_path)
    spec = store_spec(recipe, base_dir)
    start = time.perf_counter()
    manifest = list_sources(recipe, spec, concurrency=recipe.headers.concurrency)
    count = write_batches(manifest, batches_dir, recipe.headers.batch_size)
    manifest = with_batch_count(manifest, count)
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
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    write_chunk_table(table, levels_out)
    log.info("read %d headers in %.2f s (%.0f files/s)", batch.num_rows, elapsed,
             batch.num_rows / max(elapsed, 1e-9))
    return table


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start


def write_index(recipe: Recipe, manifest: pa.Table, headers: pa.Table, outputs: dict[str, str]) -> dict[str, Any]:
    """Assemble the arrays and write every output in `outputs` (by kind);
    returns the summary (references, arrays, readers, timings, notes)."""
    from chunkindex import kerchunk
    from chunkindex.footprints import write_footprints

    timings: dict[str, float] = {}
    with _timed(timings, "assemble"):
        assembled = extractor_for(recipe.format).assemble(recipe, manifest, headers)
    for note in assembled.notes:
        log.warning("%s", note)
    arrays = assembled.arrays
    root_attrs = {"title": recipe.title, "chunkindex_recipe": recipe.id, "chunkindex_files": manifest.num_rows,
                  "chunkindex_notes": assembled.notes, "chunkindex_skipped_files": assembled.skipped_files}
    if "kerchunk_parquet" in outputs:
        with _timed(timings, "kerchunk_parquet"):
            kerchunk.write_kerchunk_parquet(arrays, outputs["kerchunk_parquet"], recipe.output.record_size,
                                            root_attrs, progress_logger(log, "kerchunk parquet refs"))
    if "kerchunk_json" in outputs:
        with _timed(timings, "kerchunk_json"):
            kerchunk.write_kerchunk_json(arrays, outputs["kerchunk_json"], root_attrs)
    if "flat_parquet" in outputs:
        with _timed(timings, "flat_parquet"):
            kerchunk.write_flat_parquet(arrays, outputs["flat_parquet"])
    if "footprints_parquet" in outputs:
        with _timed(timings, "footprints"):
            write_footprints(arrays, outputs["footprints_parquet"], outputs["footprints_gpkg"])
    referenced = [a for a in arrays if a.inline is None]
    summary = {
        "refs": sum(a.n_chunks for a in referenced), "arrays": [a.name for a in arrays], "timings": timings,
        "notes": assembled.notes, "skipped_files": assembled.skipped_files,
        # A `_refs_only` variant opens in GDAL, but no reader decodes its pixels.
        "readers": {a.name: ([] if "variant_of" in a.attrs["chunkindex"] else a.chain.readers)
                    for a in arrays if "chunkindex" in a.attrs},
        "refs_per_array": {a.name: a.n_chunks for a in referenced},
        "missing_per_array": {a.name: a.n_missing for a in referenced},
    }
    if "summary" in outputs:
        Path(outputs["summary"]).write_text(json.dumps(summary, indent=1))
    log.info("wrote %d references in %d arrays: %s", summary["refs"], len(arrays),
             ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    return summary


def write_step(recipe_path: str, manifest_path: str, header_paths: list[str], outputs: dict[str, str]) -> dict[str, Any]:
    """Write the index from every header batch, or append the new files to
    it when it allows (see chunkindex.append); `outputs["state"]` records
    which files the index holds."""
    from chunkindex.append import NotAppendable, appended_files, write_state

    recipe = load_recipe(recipe_path)
    if not header_paths:
        raise ValueError(f"recipe {recipe.id}: no header batches to write an index from")
    for path in header_paths:
        found = chunk_table_metadata(path).get(b"chunkindex.header_format", b"1").decode()
        if found != str(HEADER_FORMAT_VERSION):
            raise ValueError(f"{path} was written by another chunkindex version (header format {found}, "
                             f"this one reads {HEADER_FORMAT_VERSION}): rerun with --forcerun headers")
    manifest = read_parquet(manifest_path)
    state = outputs.get("state")
    if state and set(outputs) <= {"kerchunk_parquet", "summary", "state"}:
        try:
            held = appended_files(state, outputs["kerchunk_parquet"], recipe, manifest, HEADER_FORMAT_VERSION)
            return append_step(recipe, manifest, held, header_paths, outputs)
        except NotAppendable as why:
            log.info("writing the whole index (%s)", why)
    if state:
        Path(state).unlink(missing_ok=True)  # until the new index is complete
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:  # decoding releases the GIL
        headers = pa.concat_tables(list(pool.map(read_chunk_table, header_paths)))
    log.info("read %d header batches (%d rows) in %.2f s", len(header_paths), headers.num_rows,
             time.perf_counter() - start)
    summary = write_index(recipe, manifest, headers, outputs)
    if state:
        write_state(state, recipe, manifest, HEADER_FORMAT_VERSION)
    return summary


def append_step(recipe: Recipe, manifest: pa.Table, held: int, header_paths: list[str],
                outputs: dict[str, str]) -> dict[str, Any]:
    """Append files `held:` of `manifest` to the index (raises NotAppendable
    before changing anything when they do not line up with it)."""
    from chunkindex.append import append_to_index, write_state
    from chunkindex.tables import read_rows_from

    timings: dict[str, float] = {}
    new_files = manifest.slice(held)
    with _timed(timings, "read_headers"):
        headers = pa.concat_tables([read_rows_from(p, "file_id", held) for p in header_paths])
    with _timed(timings, "assemble"):
        assembled = extractor_for(recipe.format).assemble(recipe, new_files, headers)
    with _timed(timings, "append"):
        counts = append_to_index(outputs["kerchunk_parquet"], assembled, recipe.concat.dim,
                                 recipe.output.record_size, held, manifest.num_rows)
    summary = json.loads(Path(outputs["summary"]).read_text()) if Path(outputs["summary"]).is_file() else {}
    refs_per_array = {**summary.get("refs_per_array", {}), **{k: v["refs"] for k, v in counts.items()}}
    missing = summary.get("missing_per_array", {})
    summary.update(
        refs=sum(refs_per_array.values()), refs_per_array=refs_per_array, timings=timings,
        missing_per_array={k: missing.get(k, 0) + v["new_missing"] for k, v in counts.items()},
        notes=list(dict.fromkeys([*summary.get("notes", []), *assembled.notes])),
        skipped_files=[*summary.get("skipped_files", []), *assembled.skipped_files],
        appended_files=new_files.num_rows)
    Path(outputs["summary"]).write_text(json.dumps(summary, indent=1))
    write_state(outputs["state"], recipe, manifest, HEADER_FORMAT_VERSION)
    log.info("appended %d files (%d references) to %s: %s", new_files.num_rows,
             sum(v["new_refs"] for v in counts.values()), outputs["kerchunk_parquet"],
             ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    return summary


def validate_recipe_index(recipe: Recipe, index_path: str | Path) -> Any:
    """Validate an index with the recipe's sample, seed and GDAL settings;
    a failed validation raises ValidationFailed with the mismatches."""
    from osgeo import gdal

    from chunkindex.validate import ValidationFailed, validate_index

    for key, value in recipe.source.gdal_config.items():  # endpoints, anonymous access
        gdal.SetConfigOption(key, str(value))
    report = validate_index(index_path, extractor_for(recipe.format).source(recipe), recipe.validation.sample_chunks,
                            recipe.validation.seed, recipe.validation.second_reader, recipe.concat.dim,
                            progress=lambda name: log.info("validating %s", name))
    if not report.ok:
        raise ValidationFailed(report.summary(), report)
    return report


def validate_step(recipe_path: str, index_path: str, report_out: str) -> Any:
    from chunkindex.validate import ValidationFailed

    def record(report: Any) -> None:
        Path(report_out).write_text(report.to_json())
        for line in report.summary().splitlines():
            log.info("%s", line)

    try:
        report = validate_recipe_index(load_recipe(recipe_path), index_path)
    except ValidationFailed as failed:
        record(failed.report)  # the log names every mismatch
        raise
    record(report)
    return report


def run_recipe(recipe: Recipe, base_dir: str | Path, workdir: str | Path, validate: bool = True) -> dict[str, Any]:
    """List, read headers, write and (optionally) validate in one process.

    The same steps as the workflow without Snakemake (tests, benchmarks,
    notebooks). Returns the write summary, the index paths and, with
    `validate`, the ValidationReport (validation failures raise).
    """
    from chunkindex.listing import list_sources

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    spec = store_spec(recipe, base_dir)
    manifest = list_sources(recipe, spec)
    headers = extractor_for(recipe.format).read_batch(recipe, spec, manifest)
    outputs = {"kerchunk_parquet": str(workdir / f"{recipe.id}.parq"),
               "summary": str(workdir / f"{recipe.id}.summary.json")}
    if "kerchunk-json" in recipe.output.kinds:
        outputs["kerchunk_json"] = str(workdir / f"{recipe.id}.json")
    result: dict[str, Any] = {"summary": write_index(recipe, manifest, headers, outputs), "outputs": outputs,
                              "manifest": manifest}
    if validate:
        result["validation"] = validate_recipe_index(recipe, outputs["kerchunk_parquet"])
    return result


def quick_recipe(recipe_id: str, url: str, fmt: str = "cog", *, glob: str | None = None,
                 pattern: str | None = None, variables: tuple[str, ...] = ("data",),
                 concat_dim: str = "time", concat_from: str = "filename", units: str | None = None,
                 kinds: tuple[str, ...] = ("kerchunk-parquet",), sample_chunks: int = 20,
                 store_options: dict[str, Any] | None = None, **extra: Any) -> Recipe:
    """A validated Recipe built in code (for tests and ad-hoc indexing)."""
    from chunkindex.recipe import load_schema, recipe_from_dict, validate_document

    source: dict[str, Any] = {"url": url}
    if glob:
        source["glob"] = glob
    if pattern:
        source["pattern"] = pattern
    if store_options:
        source["store_options"] = store_options
    source.update(extra.pop("source", {}))
    doc: dict[str, Any] = {
        "id": recipe_id, "title": recipe_id, "format": fmt, "source": source,
        "variables": [{"name": v} for v in variables],
        "concat": {"dim": concat_dim, "from": concat_from, **({"units": units} if units else {})},
        "output": {"kinds": list(kinds), "record_size": extra.pop("record_size", 100000)},
        "validation": {"sample_chunks": sample_chunks, "seed": 0},
        **extra,
    }
    validate_document(doc, load_schema("recipe"), f"recipe {recipe_id}")
    return recipe_from_dict(doc)
