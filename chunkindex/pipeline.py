"""The library's orchestration: write an index from listed files and their
headers, validate it, or run a recipe end to end in one process. The
workflow's file-based steps (chunkindex.workflow) call these."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from chunkindex.atomic import write_text
from chunkindex.formats import extractor_for
from chunkindex.recipe import Recipe
from chunkindex.sources.stores import StoreSpec, resolve_local

log = logging.getLogger("chunkindex")


def store_spec(recipe: Recipe, base_dir: str | Path) -> StoreSpec:
    return StoreSpec(resolve_local(recipe.source.url, base_dir), dict(recipe.source.store_options),
                     recipe.source.public_url)


def progress_logger(log: logging.Logger, what: str, every_seconds: float = 5.0) -> Callable[[int, int], None]:
    """A progress callback that logs `done/total` at most every few seconds."""
    last = [0.0]
    start = time.monotonic()

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= every_seconds:
            last[0] = now
            rate = done / max(now - start, 1e-9)
            log.info("%s: %d/%d (%.0f/s)", what, done, total, rate)

    return report


@contextlib.contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start


def write_index(recipe: Recipe, manifest: pa.Table, headers: pa.Table, outputs: dict[str, str]) -> dict[str, Any]:
    """Assemble the arrays and write every output in `outputs` (by kind);
    returns the summary (references, arrays, readers, timings, notes)."""
    from chunkindex.indexes import kerchunk
    from chunkindex.indexes.flat import write_flat_parquet
    from chunkindex.indexes.footprints import write_footprints

    timings: dict[str, float] = {}
    with timed(timings, "assemble"):
        assembled = extractor_for(recipe.format).assemble(recipe, manifest, headers)
    for note in assembled.notes:
        log.warning("%s", note)
    arrays = assembled.arrays
    root_attrs = {"title": recipe.title, "chunkindex_recipe": recipe.id, "chunkindex_files": manifest.num_rows,
                  "chunkindex_notes": assembled.notes, "chunkindex_skipped_files": assembled.skipped_files}
    if "kerchunk_parquet" in outputs:
        with timed(timings, "kerchunk_parquet"):
            kerchunk.write_kerchunk_parquet(arrays, outputs["kerchunk_parquet"], recipe.output.record_size,
                                            root_attrs, progress_logger(log, "kerchunk parquet refs"))
    if "kerchunk_json" in outputs:
        with timed(timings, "kerchunk_json"):
            kerchunk.write_kerchunk_json(arrays, outputs["kerchunk_json"], root_attrs)
    if "flat_parquet" in outputs:
        with timed(timings, "flat_parquet"):
            write_flat_parquet(arrays, outputs["flat_parquet"])
    if "footprints_parquet" in outputs:
        with timed(timings, "footprints"):
            write_footprints(arrays, outputs["footprints_parquet"], outputs.get("footprints_gpkg"),
                             outputs.get("footprints_fgb"))
    if "coverage_gti" in outputs:
        from chunkindex.indexes.coverage import write_gti
        from chunkindex.sources.stores import gdal_path

        with timed(timings, "coverage"):
            # One variable's files (the first recipe variable): a GTI mosaics one band set.
            first = recipe.variables[0].name
            rows = [r for r in manifest.select(["url", "time", "variable"]).to_pylist()
                    if r["variable"] in (None, first)]
            write_gti([gdal_path(r["url"]) for r in rows], [r["time"] for r in rows], outputs["coverage_gti"])
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
        write_text(outputs["summary"], json.dumps(summary, indent=1))
    log.info("wrote %d references in %d arrays: %s", summary["refs"], len(arrays),
             ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    return summary


def validate_recipe_index(recipe: Recipe, index_path: str | Path) -> Any:
    """Validate an index with the recipe's sample, seed and GDAL settings;
    a failed validation raises ValidationFailed with the mismatches."""
    from chunkindex.sources.stores import gdal_module
    from chunkindex.validate import ValidationFailed, validate_index

    gdal = gdal_module()

    for key, value in recipe.source.gdal_config.items():  # endpoints, anonymous access
        gdal.SetConfigOption(key, str(value))
    report = validate_index(index_path, extractor_for(recipe.format).source(recipe), recipe.validation.sample_chunks,
                            recipe.validation.seed, recipe.validation.second_reader, recipe.concat.dim,
                            progress=lambda name: log.info("validating %s", name))
    if not report.ok:
        raise ValidationFailed(report.summary(), report)
    return report


def run_recipe(recipe: Recipe, base_dir: str | Path, workdir: str | Path, validate: bool = True) -> dict[str, Any]:
    """List, read headers, write and (optionally) validate in one process.

    The same steps as the workflow without Snakemake (tests, benchmarks,
    notebooks). Returns the write summary, the index paths and, with
    `validate`, the ValidationReport (validation failures raise).
    """
    from chunkindex.sources.listing import list_sources

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
