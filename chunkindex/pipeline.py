"""The workflow's steps as plain functions (the Snakemake scripts call these)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from chunkindex.extract import extractor_for
from chunkindex.recipe import Recipe, load_recipe
from chunkindex.stores import StoreSpec, resolve_local
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
    tmp = Path(manifest_out).with_suffix(".tmp")
    pq.write_table(manifest, tmp)
    tmp.replace(manifest_out)
    log.info("listed %d files (%d bytes) from %s in %.2f s; %d header batches",
             manifest.num_rows, sum(manifest["size"].to_pylist()), spec.url,
             time.perf_counter() - start, count)
    return manifest


def headers_step(recipe_path: str, base_dir: str, batch_path: str, levels_out: str) -> pa.Table:
    recipe = load_recipe(recipe_path)
    batch = pq.read_table(batch_path)
    extractor = extractor_for(recipe.format)
    start = time.perf_counter()
    table = extractor.read_batch(recipe, store_spec(recipe, base_dir), batch,
                                 progress_logger(log, f"headers {Path(batch_path).stem}"))
    elapsed = time.perf_counter() - start
    meta = {b"chunkindex.seconds": str(elapsed).encode(), b"chunkindex.files": str(batch.num_rows).encode()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    tmp = Path(levels_out).with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(levels_out)
    log.info("read %d headers in %.2f s (%.0f files/s)", batch.num_rows, elapsed,
             batch.num_rows / max(elapsed, 1e-9))
    return table


def write_step(recipe_path: str, manifest_path: str, header_paths: list[str], outputs: dict[str, str]) -> dict[str, Any]:
    from chunkindex import kerchunk
    from chunkindex.footprints import write_footprints

    recipe = load_recipe(recipe_path)
    manifest = pq.read_table(manifest_path)
    headers = pa.concat_tables([pq.read_table(p) for p in header_paths]) if header_paths else None
    if headers is None:
        raise ValueError(f"recipe {recipe.id}: no header batches to write an index from")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    assembled = extractor_for(recipe.format).assemble(recipe, manifest, headers)
    timings["assemble"] = time.perf_counter() - start
    for note in assembled.notes:
        log.warning("%s", note)
    root_attrs = {"title": recipe.title, "chunkindex_recipe": recipe.id,
                  "chunkindex_notes": assembled.notes, "chunkindex_skipped_files": assembled.skipped_files}
    n_refs = sum(a.n_chunks for a in assembled.arrays if a.inline is None)
    if "kerchunk_parquet" in outputs:
        start = time.perf_counter()
        kerchunk.write_kerchunk_parquet(assembled.arrays, outputs["kerchunk_parquet"], recipe.output.record_size,
                                        root_attrs, progress_logger(log, "kerchunk parquet refs"))
        timings["kerchunk_parquet"] = time.perf_counter() - start
    if "kerchunk_json" in outputs:
        start = time.perf_counter()
        kerchunk.write_kerchunk_json(assembled.arrays, outputs["kerchunk_json"], root_attrs)
        timings["kerchunk_json"] = time.perf_counter() - start
    if "flat_parquet" in outputs:
        start = time.perf_counter()
        kerchunk.write_flat_parquet(assembled.arrays, outputs["flat_parquet"])
        timings["flat_parquet"] = time.perf_counter() - start
    if "footprints_parquet" in outputs:
        start = time.perf_counter()
        write_footprints(assembled.arrays, outputs["footprints_parquet"], outputs["footprints_gpkg"])
        timings["footprints"] = time.perf_counter() - start
    summary = {"refs": n_refs, "arrays": [a.name for a in assembled.arrays], "timings": timings,
               "notes": assembled.notes, "skipped_files": assembled.skipped_files}
    # A `_refs_only` variant opens in GDAL, but no reader decodes its pixels.
    summary["readers"] = {a.name: ([] if "variant_of" in a.attrs["chunkindex"] else a.chain.readers)
                          for a in assembled.arrays if "chunkindex" in a.attrs}
    summary["refs_per_array"] = {a.name: a.n_chunks for a in assembled.arrays if a.inline is None}
    summary["missing_per_array"] = {a.name: a.n_missing for a in assembled.arrays if a.inline is None}
    if "summary" in outputs:
        Path(outputs["summary"]).write_text(json.dumps(summary, indent=1))
    log.info("wrote %d references in %d arrays: %s", n_refs, len(assembled.arrays),
             ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    return summary


def apply_gdal_config(recipe: Recipe) -> None:
    """Set the recipe's GDAL configuration options (endpoints, anonymous access)."""
    from osgeo import gdal

    for key, value in recipe.source.gdal_config.items():
        gdal.SetConfigOption(key, str(value))


def validate_step(recipe_path: str, index_path: str, report_out: str) -> Any:
    from chunkindex.validate import ValidationFailed, validate_index

    recipe = load_recipe(recipe_path)
    apply_gdal_config(recipe)
    source = extractor_for(recipe.format).source(recipe)
    report = validate_index(index_path, source, recipe.validation.sample_chunks, recipe.validation.seed,
                            recipe.validation.second_reader, recipe.concat.dim,
                            progress=lambda name: log.info("validating %s", name))
    Path(report_out).write_text(report.to_json())
    for line in report.summary().splitlines():
        log.info("%s", line)
    if not report.ok:
        raise ValidationFailed(report.summary())
    return report


def load_json(path: str) -> Any:
    return json.loads(Path(path).read_text())


def run_recipe(recipe: Recipe, base_dir: str | Path, workdir: str | Path, validate: bool = True) -> dict[str, Any]:
    """List, read headers, write and (optionally) validate in one process.

    The same steps as the workflow without Snakemake (tests, benchmarks,
    notebooks). Returns the write summary, the index paths and, with
    `validate`, the ValidationReport (validation failures raise).
    """
    import tempfile

    from chunkindex.listing import list_sources
    from chunkindex.validate import ValidationFailed, validate_index

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    spec = store_spec(recipe, base_dir)
    manifest = list_sources(recipe, spec)
    extractor = extractor_for(recipe.format)
    headers = extractor.read_batch(recipe, spec, manifest)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        recipe_path = Path(tmp) / f"{recipe.id}.yaml"
        recipe_path.write_text(recipe_yaml(recipe))
        manifest_path, headers_path = Path(tmp) / "manifest.parquet", Path(tmp) / "headers.parquet"
        pq.write_table(manifest, manifest_path)
        pq.write_table(headers, headers_path)
        outputs = {"kerchunk_parquet": str(workdir / f"{recipe.id}.parq"),
                   "summary": str(workdir / f"{recipe.id}.summary.json")}
        if "kerchunk-json" in recipe.output.kinds:
            outputs["kerchunk_json"] = str(workdir / f"{recipe.id}.json")
        summary = write_step(str(recipe_path), str(manifest_path), [str(headers_path)], outputs)
    result: dict[str, Any] = {"summary": summary, "outputs": outputs, "manifest": manifest}
    if validate:
        apply_gdal_config(recipe)
        report = validate_index(outputs["kerchunk_parquet"], extractor.source(recipe),
                                recipe.validation.sample_chunks, recipe.validation.seed,
                                recipe.validation.second_reader, recipe.concat.dim)
        result["validation"] = report
        if not report.ok:
            raise ValidationFailed(report.summary())
    return result


def recipe_yaml(recipe: Recipe) -> str:
    """The YAML text of a Recipe (round-trips through load_recipe)."""
    import dataclasses

    import yaml

    doc = dataclasses.asdict(recipe)
    doc.pop("path", None)
    doc["concat"]["from"] = doc["concat"].pop("from_")
    doc["output"]["kinds"] = list(doc["output"]["kinds"])
    doc["benchmark"]["scale_files"] = list(doc["benchmark"]["scale_files"])
    if doc["source"]["template"] is None:
        doc["source"].pop("template")
    if not doc["source"]["gdal_config"]:
        doc["source"].pop("gdal_config")
    for key in ("pattern", "glob", "public_url", "synthetic"):
        if doc["source"][key] is None:
            doc["source"].pop(key)
    for variable in doc["variables"]:
        if variable["source_name"] is None:
            variable.pop("source_name")
    if doc["concat"]["units"] is None:
        doc["concat"].pop("units")
    if not doc["description"]:
        doc.pop("description")
    return yaml.safe_dump(doc, sort_keys=False)


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
