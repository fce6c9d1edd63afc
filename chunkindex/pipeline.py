"""The library's orchestration: write an index from listed files and their
headers, validate it, or index a recipe (or a folder) end to end in one
process. The workflow's file-based steps (chunkindex.workflow) and the
command line call these."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chunkindex.atomic import write_text
from chunkindex.formats import extractor_for
from chunkindex.model import AssembledIndex
from chunkindex.recipe import Recipe
from chunkindex.sources.stores import StoreSpec, resolve_local

if TYPE_CHECKING:
    import pyarrow as pa

    from chunkindex.validate import ValidationReport

log = logging.getLogger("chunkindex")

# progress(what) -> a callback of (done, total): how long steps report progress.
ProgressFactory = Callable[[str], Callable[[int, int], None]]

# Output kind -> (write_index output name, file name suffix), as the workflow names them.
OUTPUT_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    "kerchunk-parquet": (("kerchunk_parquet", ".parq"),),
    "kerchunk-json": (("kerchunk_json", ".json"),),
    "cri-parquet": (("cri_parquet", ".cri.parquet"),),
    "cri-gpkg": (("cri_gpkg", ".cri.gpkg"),),
    "cri-duckdb": (("cri_duckdb", ".cri.duckdb"),),
    "footprints": (("footprints_parquet", ".footprints.parquet"), ("footprints_gpkg", ".footprints.gpkg"),
                   ("footprints_fgb", ".footprints.fgb")),
    "vrt": (("vrt", ".vrt"),),
}
# Per-file coverage that stock GDAL mosaics (GTI): for COG recipes with footprints.
COVERAGE_GTI = ("coverage_gti", ".gti.gpkg")


def output_paths(folder: str | Path, name: str, kinds: tuple[str, ...], fmt: str | None = None) -> dict[str, str]:
    """The files `write_index` writes for output `kinds` into `folder`, by output name.

    Kinds this version does not know are named in the error (the recipe schema
    refuses them first when the recipe was loaded).

    Args:
        folder: where the index files go.
        name: the file name stem (the recipe id).
        kinds: the recipe's `output.kinds`.
        fmt: the recipe's source format; with `cog` and `footprints`, the
            per-file GTI coverage (`coverage_gti`) is written too.

    Returns:
        Output name (`kerchunk_parquet`, `cri_parquet`, ...) -> path, plus `summary`.

    Example:
        >>> output_paths("out", "sst", ("kerchunk-parquet",))
        {'kerchunk_parquet': 'out/sst.parq', 'summary': 'out/sst.summary.json'}
    """
    unknown = [k for k in kinds if k not in OUTPUT_FILES]
    if unknown:
        raise ValueError(f"output kinds {', '.join(unknown)} are not written by this chunkindex "
                         f"(known: {', '.join(OUTPUT_FILES)})")
    outputs = {out: str(Path(folder) / f"{name}{suffix}") for kind in kinds for out, suffix in OUTPUT_FILES[kind]}
    if fmt == "cog" and "footprints" in kinds:
        outputs[COVERAGE_GTI[0]] = str(Path(folder) / f"{name}{COVERAGE_GTI[1]}")
    outputs["summary"] = str(Path(folder) / f"{name}.summary.json")
    return outputs


@dataclass
class WriteSummary:
    """What `write_index` wrote (also the `<id>.summary.json` beside the index).

    Attributes:
        refs: chunk references written (data arrays, references-only variants included).
        arrays: every array of the index, coordinates included.
        timings: seconds per part of the write (assemble, each index kind).
        notes: what the assembly noticed (gaps in time, skipped levels, ...).
        skipped_files: files left out (`source.on_mismatch: skip`) with the reason.
        readers: data array -> the readers that decode its pixels through the index.
        refs_per_array: data array -> chunks (with or without a file).
        missing_per_array: data array -> chunks with no data (read as the fill value).
        left_out_of_kerchunk: arrays with short edge chunks, which Kerchunk (Zarr) cannot carry.
        appended_files: files appended by the last update, when it was an append.
    """

    refs: int
    arrays: list[str]
    timings: dict[str, float]
    notes: list[str]
    skipped_files: list[str]
    readers: dict[str, list[str]]
    refs_per_array: dict[str, int]
    missing_per_array: dict[str, int]
    left_out_of_kerchunk: list[str] = field(default_factory=list)
    appended_files: int | None = None

    def to_json(self) -> str:
        """The summary as the JSON document written beside the index."""
        doc = dataclasses.asdict(self)
        if doc["appended_files"] is None:
            del doc["appended_files"]
        return json.dumps(doc, indent=1)

    @classmethod
    def read(cls, path: str | Path) -> WriteSummary:
        """A summary written by `to_json`."""
        doc = json.loads(Path(path).read_text())
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


@dataclass
class IndexResult:
    """What indexing a recipe in one process produced.

    Attributes:
        recipe: the recipe indexed.
        outputs: output name (`kerchunk_parquet`, `summary`, ...) -> path written.
        summary: the write summary.
        files: files listed and indexed.
        validation: the validation report, when validation ran (a failed
            validation raises ValidationFailed instead).
        timings: seconds per step (list, headers, write, validate).
    """

    recipe: Recipe
    outputs: dict[str, str]
    summary: WriteSummary
    files: int
    validation: ValidationReport | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def index(self) -> str:
        """The main index written: Kerchunk Parquet, else JSON, else the first output."""
        for name in ("kerchunk_parquet", "kerchunk_json"):
            if name in self.outputs:
                return self.outputs[name]
        return next(iter(self.outputs.values()))


def store_spec(recipe: Recipe, base_dir: str | Path) -> StoreSpec:
    """The store a recipe's files are listed and read from.

    Args:
        recipe: the recipe (its `source.url`, `store_options`, `public_url`).
        base_dir: the folder relative local `source.url`s are resolved against.

    Returns:
        A StoreSpec for obstore.

    Example:
        >>> from chunkindex.pipeline import quick_recipe
        >>> store_spec(quick_recipe("x", "/data", glob="*.tif"), "/").url
        'file:///data'
    """
    return StoreSpec(resolve_local(recipe.source.url, base_dir), dict(recipe.source.store_options),
                     recipe.source.public_url)


def progress_logger(log: logging.Logger, what: str, every_seconds: float = 5.0) -> Callable[[int, int], None]:
    """A progress callback that logs `done/total` at most every few seconds.

    Args:
        log: the logger to write to.
        what: what is counted, e.g. "headers batch-00000".
        every_seconds: the least time between two lines (the last one is always logged).

    Returns:
        A callback taking (done, total).

    Example:
        >>> report = progress_logger(logging.getLogger("demo"), "files")
        >>> report(10, 10)
    """
    last = [0.0]
    start = time.monotonic()

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= every_seconds:
            last[0] = now
            rate = done / max(now - start, 1e-9)
            log.info("%s: %d/%d (%.0f/s)", what, done, total, rate)

    return report


def _logged_progress(what: str) -> Callable[[int, int], None]:
    return progress_logger(log, what)


@contextlib.contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Record the seconds the `with` block takes as `timings[name]`."""
    start = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - start


def write_index(recipe: Recipe, manifest: pa.Table, headers: pa.Table, outputs: dict[str, str],
                threads: int = 1, progress: ProgressFactory | None = None) -> WriteSummary:
    """Assemble the arrays and write every index in `outputs`.

    Args:
        recipe: the recipe.
        manifest: the listing (`chunkindex.sources.listing.list_sources`).
        headers: every file's header rows (the format's `read_batch`), concatenated.
        outputs: output name -> path (`output_paths`); `summary` is written last.
        threads: threads for encoding reference files.
        progress: makes a (done, total) callback per long step (logged when None).

    Returns:
        The WriteSummary (also written to `outputs["summary"]` when given).

    Example:
        >>> from chunkindex.pipeline import quick_recipe, store_spec
        >>> from chunkindex.sources.listing import list_sources
        >>> from chunkindex.formats import extractor_for
        >>> recipe = quick_recipe("sst", "resources/fixtures/ghrsst-demo", glob="**/*.tif")  # doctest: +SKIP
        >>> spec = store_spec(recipe, ".")  # doctest: +SKIP
        >>> manifest = list_sources(recipe, spec)  # doctest: +SKIP
        >>> headers = extractor_for("cog").read_batch(recipe, spec, manifest)  # doctest: +SKIP
        >>> write_index(recipe, manifest, headers, output_paths("out", "sst", ("kerchunk-parquet",)))  # doctest: +SKIP
    """
    timings: dict[str, float] = {}
    with timed(timings, "assemble"):
        assembled = extractor_for(recipe.format).assemble(recipe, manifest, headers)
    return write_assembled(recipe, manifest, assembled, outputs, threads=threads, progress=progress,
                           timings=timings, headers=headers)


# Writes a Kerchunk Parquet folder from the arrays to write, the path, the
# record size, the root attributes, a progress callback and the thread budget
# (`kerchunk.write_kerchunk_parquet`'s signature).
KerchunkParquetWriter = Callable[..., Any]


def write_assembled(recipe: Recipe, manifest: pa.Table, assembled: AssembledIndex, outputs: dict[str, str],
                    threads: int = 1, progress: ProgressFactory | None = None,
                    timings: dict[str, float] | None = None,
                    kerchunk_parquet_writer: KerchunkParquetWriter | None = None,
                    cri_parquet_writer: Callable[..., Any] | None = None,
                    headers: pa.Table | None = None) -> WriteSummary:
    """Write every index in `outputs` from arrays already assembled (`write_index`'s second half).

    Args:
        recipe: the recipe.
        manifest: the listing.
        assembled: the arrays, notes and skipped files (the format's `assemble`).
        outputs: output name -> path (`output_paths`); `summary` is written last.
        threads: threads for encoding reference files.
        progress: makes a (done, total) callback per long step (logged when None).
        timings: seconds per part already measured (the assembly), completed here.
        kerchunk_parquet_writer: writes the Kerchunk Parquet folder instead of
            `kerchunk.write_kerchunk_parquet` (the sharded write streams the
            reference rows from its shards: `chunkindex.indexes.sharded`).
        cri_parquet_writer: writes the CRI Parquet file instead of
            `flat.write_cri_parquet` (the same keyword arguments), as above.
        headers: header rows giving each COG file's grid for the GTI
            coverage (`coverage.header_grids`: at least the first IFD of
            every file); without them the coverage opens the files.

    Returns:
        The WriteSummary (also written to `outputs["summary"]` when given).
    """
    from chunkindex.indexes import flat, kerchunk
    from chunkindex.indexes.footprints import write_footprints

    progress = progress or _logged_progress
    timings = timings if timings is not None else {}
    write_parquet_refs = kerchunk_parquet_writer or kerchunk.write_kerchunk_parquet
    for note in assembled.notes:
        log.warning("%s", note)
    arrays = assembled.arrays
    kerchunk_kinds = {"kerchunk_parquet", "kerchunk_json"} & set(outputs)
    zarr_arrays = arrays
    if kerchunk_kinds:
        zarr_arrays, refused = kerchunk.zarr_readable(arrays)
        for note in refused:
            log.warning("%s", note)
        assembled.notes.extend(refused)
        other_kinds = set(outputs) - kerchunk_kinds - {"summary", "state"}
        if refused and not other_kinds and not any("chunkindex" in a.attrs for a in zarr_arrays):
            raise kerchunk.KerchunkRefused(f"recipe {recipe.id}: no array can be written as Kerchunk references:\n  "
                                           + "\n  ".join(refused))
    root_attrs = {"title": recipe.title, "chunkindex_recipe": recipe.id, "chunkindex_files": manifest.num_rows,
                  "chunkindex_notes": assembled.notes, "chunkindex_skipped_files": assembled.skipped_files}
    if "kerchunk_parquet" in outputs:
        with timed(timings, "kerchunk_parquet"):
            write_parquet_refs(zarr_arrays, outputs["kerchunk_parquet"], recipe.output.record_size,
                               root_attrs, progress("kerchunk parquet refs"), threads=threads)
    if "kerchunk_json" in outputs:
        with timed(timings, "kerchunk_json"):
            kerchunk.write_kerchunk_json(zarr_arrays, outputs["kerchunk_json"], root_attrs)
    # The flat index (CRI): the same arrays, overviews as levels, the true chains.
    if "cri_parquet" in outputs:
        with timed(timings, "cri_parquet"):
            # With `footprints` among the kinds, every row carries its chunk's footprint too.
            (cri_parquet_writer or flat.write_cri_parquet)(
                assembled, outputs["cri_parquet"], files=manifest, root_attrs=root_attrs,
                threads=threads if threads > 1 else None, footprints="footprints" in recipe.output.kinds)
    if "cri_gpkg" in outputs:
        with timed(timings, "cri_gpkg"):
            flat.write_cri_gpkg(assembled, outputs["cri_gpkg"], files=manifest, root_attrs=root_attrs,
                                footprints="footprints" in recipe.output.kinds)
    if "cri_duckdb" in outputs:
        with timed(timings, "cri_duckdb"):
            flat.write_cri_duckdb(assembled, outputs["cri_duckdb"], files=manifest, root_attrs=root_attrs)
    if "footprints_parquet" in outputs:
        with timed(timings, "footprints"):
            write_footprints(arrays, outputs["footprints_parquet"], outputs.get("footprints_gpkg"),
                             outputs.get("footprints_fgb"))
    if "coverage_gti" in outputs:
        from chunkindex.indexes.coverage import header_grids, write_gti
        from chunkindex.sources.stores import gdal_module, gdal_path

        with timed(timings, "coverage"):
            # One variable's files (the first recipe variable): a GTI mosaics one band set.
            first = recipe.variables[0].name
            rows = [r for r in manifest.select(["file_id", "url", "time", "variable"]).to_pylist()
                    if r["variable"] in (None, first)]
            # Grids come from the headers already read; a file they do not place is opened through GDAL,
            # with the recipe's endpoint and credentials settings.
            grids = (header_grids(headers, [r["file_id"] for r in rows])
                     if recipe.format == "cog" and headers is not None else None)
            with gdal_module().config_options({k: str(v) for k, v in recipe.source.gdal_config.items()}):
                write_gti([gdal_path(r["url"]) for r in rows], [r["time"] for r in rows], outputs["coverage_gti"],
                          grids)
    if "vrt" in outputs:  # for a GDAL without the CRI plugin: its GTiff driver reads the source files
        from chunkindex.indexes.vrt import write_multidim_vrt

        with timed(timings, "vrt"):
            write_multidim_vrt(arrays, outputs["vrt"], recipe.concat.dim)
    referenced = [a for a in arrays if a.inline is None]
    summary = WriteSummary(
        refs=sum(a.n_chunks for a in referenced), arrays=[a.name for a in arrays], timings=timings,
        notes=assembled.notes, skipped_files=assembled.skipped_files,
        # A references-only variant opens in GDAL, but no reader decodes its pixels.
        readers={a.name: ([] if "variant_of" in a.attrs["chunkindex"] else a.chain.readers)
                 for a in arrays if "chunkindex" in a.attrs},
        refs_per_array={a.name: a.n_chunks for a in referenced},
        missing_per_array={a.name: assembled.missing.get(a.name, a.n_missing) for a in referenced},
        # Arrays with short edge chunks: in the CRI index, not in the Kerchunk one.
        left_out_of_kerchunk=sorted({a.name for a in arrays} - {a.name for a in zarr_arrays}),
    )
    if "summary" in outputs:
        write_text(outputs["summary"], summary.to_json())
    log.info("wrote %d references in %d arrays: %s", summary.refs, len(arrays),
             ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    return summary


VALIDATION_GDAL_CACHE = 256 << 20  # bytes of GDAL block cache while validating (unless GDAL_CACHEMAX is set)


def validate_recipe_index(recipe: Recipe, index_path: str | Path | None,
                          cri_path: str | Path | None = None) -> ValidationReport:
    """Validate an index against its sources with the recipe's sample, seed and GDAL settings.

    The Kerchunk index (Parquet or JSON) is validated through GDAL's Zarr
    driver, the CRI index through the `chunkindex.flat` reader (its arrays
    are named `cri:<array>` in the one report); other kinds are derived from
    the same arrays.

    Args:
        recipe: the recipe the index was written from.
        index_path: its Kerchunk Parquet folder or Kerchunk JSON file, or None.
        cri_path: its CRI Parquet file, or None.

    Returns:
        The ValidationReport (every check passed).

    Raises:
        ValidationFailed: a mismatch; its `report` names every array and chunk.

    Example:
        >>> from chunkindex import load_recipe
        >>> report = validate_recipe_index(load_recipe("recipes/ghrsst-demo.yaml"),
        ...                                "results/ghrsst-demo/index/ghrsst-demo.parq")  # doctest: +SKIP
        >>> print(report.summary())  # doctest: +SKIP
    """
    from chunkindex.indexes.flat_validate import validate_cri
    from chunkindex.sources.stores import gdal_module
    from chunkindex.validate import ValidationFailed, ValidationReport, validate_index

    gdal = gdal_module()

    for key, value in recipe.source.gdal_config.items():  # endpoints, anonymous access
        gdal.SetConfigOption(key, str(value))
    if gdal.GetConfigOption("GDAL_CACHEMAX") is None:
        # GDAL's block cache defaults to 5% of the machine's memory (12 GB on a
        # 256 GB node): a sample of chunks needs a few MB of it, and a job its 2 GB.
        gdal.SetCacheMax(VALIDATION_GDAL_CACHE)
    if index_path is None and cri_path is None:
        raise ValueError(f"recipe {recipe.id}: no index to validate")
    report = ValidationReport(index=str(index_path or cri_path))
    if index_path is not None:
        report = validate_index(index_path, extractor_for(recipe.format).source(recipe),
                                recipe.validation.sample_chunks, recipe.validation.seed,
                                recipe.validation.second_reader, recipe.concat.dim,
                                progress=lambda name: log.info("validating %s", name))
    if cri_path is not None:
        cri = validate_cri(cri_path, extractor_for(recipe.format).source(recipe), recipe.validation.sample_chunks,
                           recipe.validation.seed, recipe.concat.dim, dict(recipe.source.store_options),
                           progress=lambda name: log.info("validating %s (CRI)", name))
        for result in cri.arrays:
            result.array = f"cri:{result.array}"
        for mismatch in cri.mismatches:
            mismatch.array = f"cri:{mismatch.array}"
        report.arrays.extend(cri.arrays)
        report.mismatches.extend(cri.mismatches)
        report.notes.extend(n for n in cri.notes if n not in report.notes)
        if index_path is not None:
            report.index = f"{index_path} and {cri_path}"
    if not report.ok:
        raise ValidationFailed(report.summary(), report)
    return report


def run_recipe(recipe: Recipe, base_dir: str | Path, workdir: str | Path, validate: bool = True,
               threads: int = 1, progress: ProgressFactory | None = None) -> IndexResult:
    """Index a recipe in one process: list, read headers, write every output kind, validate.

    The same steps as the workflow without Snakemake (one header batch, no
    caching). Kerchunk Parquet is always written when validation runs and the
    recipe asks for no Kerchunk kind, into `workdir/.validation/`: GDAL
    validates the index through it (the report says so).

    Args:
        recipe: the recipe (`load_recipe`, `quick_recipe` or `infer_recipe`).
        base_dir: the folder relative local `source.url`s are resolved against.
        workdir: where the index files go (`<id>.parq`, `<id>.json`, ...).
        validate: validate with GDAL (and zarr-python) against the sources.
        threads: threads for encoding reference files.
        progress: makes a (done, total) callback per long step (logged when None).

    Returns:
        An IndexResult: the paths written, the summary, the validation report.

    Raises:
        ValidationFailed: the index disagrees with its sources.
        ListingError, RecipeError, ValueError: bad input, named (nothing half-written).

    Example:
        >>> from chunkindex import load_recipe, run_recipe
        >>> result = run_recipe(load_recipe("recipes/ghrsst-demo.yaml"), ".", "out")  # doctest: +SKIP
        >>> result.outputs["kerchunk_parquet"], result.summary.refs  # doctest: +SKIP
    """
    from chunkindex.sources.listing import list_sources

    progress = progress or _logged_progress
    timings: dict[str, float] = {}
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    spec = store_spec(recipe, base_dir)
    with timed(timings, "list"):
        manifest = list_sources(recipe, spec)
    with timed(timings, "headers"):
        headers = extractor_for(recipe.format).read_batch(recipe, spec, manifest, progress("headers"))
    outputs = output_paths(workdir, recipe.id, recipe.output.kinds, recipe.format)
    validated_through: str | None = None
    if validate and not {"kerchunk_parquet", "kerchunk_json"} & set(outputs):
        validated_through = str(workdir / ".validation" / f"{recipe.id}.parq")
        outputs["kerchunk_parquet"] = validated_through
    with timed(timings, "write"):
        summary = write_index(recipe, manifest, headers, outputs, threads=threads, progress=progress)
    result = IndexResult(recipe, outputs, summary, manifest.num_rows, timings=timings)
    if validate:
        with timed(timings, "validate"):
            result.validation = validate_recipe_index(recipe, result.index, outputs.get("cri_parquet"))
        if validated_through is not None:
            result.validation.notes.append(
                f"the recipe writes no Kerchunk index ({', '.join(recipe.output.kinds)}); validation checked the "
                f"same arrays through a Kerchunk Parquet index written for it ({validated_through})")
    return result


def quick_recipe(recipe_id: str, url: str, fmt: str = "cog", *, glob: str | None = None,
                 pattern: str | None = None, variables: tuple[str, ...] = ("data",),
                 concat_dim: str = "time", concat_from: str = "filename", units: str | None = None,
                 kinds: tuple[str, ...] = ("kerchunk-parquet",), sample_chunks: int = 20,
                 store_options: dict[str, Any] | None = None, **extra: Any) -> Recipe:
    """A validated Recipe built in code (tests, notebooks, ad-hoc indexing).

    Args:
        recipe_id: the recipe id (also the index file names).
        url: the source folder or URL.
        fmt: `cog`, `netcdf4` or `hdf5`.
        glob: files to take (when there is no `pattern`).
        pattern: file name pattern with `{time:...}`/`{variable}` fields.
        variables: the arrays to index.
        concat_dim: the dimension files stack along.
        concat_from: `filename` or `variable`.
        units: CF units of the concatenated coordinate.
        kinds: output kinds.
        sample_chunks: chunks validation samples per array.
        store_options: obstore options.
        **extra: other top-level recipe sections (`headers`, `output` fields as
            `record_size`, `source` fields under `source`).

    Returns:
        The Recipe, validated against the schema (defaults filled in).

    Example:
        >>> quick_recipe("sst", "/data/sst", glob="*.tif").output.kinds
        ('kerchunk-parquet',)
    """
    from chunkindex.recipe import load_schema, recipe_from_dict, validate_document

    source: dict[str, Any] = {"url": url}
    if glob:
        source["glob"] = glob
    if pattern:
        source["pattern"] = pattern
    if store_options:
        source["store_options"] = store_options
    source.update(extra.pop("source", {}))
    output: dict[str, Any] = {"kinds": list(kinds)}
    if "record_size" in extra:
        output["record_size"] = extra.pop("record_size")
    doc: dict[str, Any] = {
        "id": recipe_id, "title": recipe_id, "format": fmt, "source": source,
        "variables": [{"name": v} for v in variables],
        "concat": {"dim": concat_dim, "from": concat_from, **({"units": units} if units else {})},
        "output": output,
        "validation": {"sample_chunks": sample_chunks, "seed": 0},
        **extra,
    }
    validate_document(doc, load_schema("recipe"), f"recipe {recipe_id}")
    return recipe_from_dict(doc)
