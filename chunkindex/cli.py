"""`chunkindex` command line: index, validate, info, refs, doctor.

Imports are deferred to the command that needs them: `chunkindex index` on a
folder of COGs is a sub-second process, and its start-up counts.
"""

from __future__ import annotations

import argparse
import importlib.abc
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chunkindex.pipeline import ProgressFactory
    from chunkindex.recipe import Recipe
    from chunkindex.validate import ValidationReport

log = logging.getLogger("chunkindex")


def _info(index: str) -> int:
    from chunkindex.indexes.kerchunk import KerchunkIndex

    opened = KerchunkIndex.open(index)
    meta = opened.metadata
    record_size = opened.record_size
    kind = "Kerchunk Parquet" if record_size is not None else "Kerchunk JSON"
    print(f"{index}: {kind}" + (f", record_size {record_size}" if record_size else ""))
    root = meta.get(".zattrs", {})
    if root.get("title"):
        print(f"title: {root['title']}")
    files: set[str] = set()
    for name in sorted(opened.array_names, key=lambda n: n + "/.zarray"):  # as the keys sort
        zarray, attrs = opened.zarray(name), opened.zattrs(name)
        n_chunks = opened.grid(name).n_chunks
        dims = attrs.get("_ARRAY_DIMENSIONS", [])
        info = attrs.get("chunkindex", {})
        codec = info.get("codec", {})
        readers = codec.get("readers")
        decodable = ("GDAL: yes" if info.get("gdal_decodable") else "GDAL: NO") if info else "inline"
        if info.get("warning"):
            decodable += f" ({info['warning']})"
        references = opened.references(name)
        refs = int((references.codes >= 0).sum())
        files |= references.referenced_files
        print(f"  {name}{tuple(dims)} shape {tuple(zarray['shape'])} chunks {tuple(zarray['chunks'])} "
              f"{zarray['dtype']} fill {zarray['fill_value']}")
        print(f"      codec: {codec.get('description') or zarray['compressor']}; {decodable}"
              + (f"; readers: {', '.join(readers) or 'none'}" if readers is not None else ""))
        print(f"      chunks {n_chunks:,}, references {refs:,}")
    print(f"files referenced: {len(files):,}")
    return 0


def _is_kerchunk(source: str) -> bool:
    import json

    path = Path(source)
    if path.is_file():
        return source.endswith(".json")
    zmeta = path / ".zmetadata"
    return zmeta.is_file() and "record_size" in json.loads(zmeta.read_text())


def _convert(source: str, target: str, options: list[str]) -> int:
    """Kerchunk or a Zarr store -> CRI, or CRI -> Kerchunk, by the names given."""
    from chunkindex.indexes import convert

    store_options = dict(o.split("=", 1) for o in options)
    if source.endswith(".cri.parquet"):
        if target.endswith(".cri.parquet"):
            print("error: both paths are CRI indexes; convert to or from Kerchunk or a Zarr store", file=sys.stderr)
            return 2
        out = convert.cri_to_kerchunk(source, target)
        kind = "Kerchunk JSON" if target.endswith(".json") else "Kerchunk Parquet"
    elif target.endswith(".cri.parquet"):
        if _is_kerchunk(source):
            out = convert.kerchunk_to_cri(source, target)
            kind = "CRI Parquet (from Kerchunk)"
        else:
            out = convert.zarr_to_cri(source, target, store_options)
            kind = "CRI Parquet (from the Zarr store)"
    else:
        print("error: one of SOURCE and TARGET must be a *.cri.parquet file", file=sys.stderr)
        return 2
    print(f"wrote {kind}: {out}")
    return 0


def _cri_info(index: str) -> int:
    from chunkindex.indexes.flat import open_index

    cri = open_index(index)
    print(f"{index}: CRI Parquet {cri.document['cri_version']}, {cri.num_rows:,} rows in "
          f"{cri.num_row_groups} row groups" + (f", base {cri.base}" if cri.base else ""))
    for name, array in cri.arrays.items():
        print(f"  {name}{tuple(array.dims)} {array.dtype.str} fill {array.fill_value}")
        for level, meta in sorted(array.levels.items()):
            codec = " -> ".join(step["name"] for step in meta["codec"]) or "none"
            print(f"      level {level}: shape {tuple(meta['shape'])} chunks {tuple(meta['chunk_shape'])}; {codec}")
    files = cri.files
    if files:
        print(f"files: {len(files['rows']):,}")
    return 0


def _refs(index: str, array: str, key: str) -> int:
    from chunkindex.indexes.kerchunk import lookup_reference

    try:
        parts = tuple(int(p) for p in key.replace(".", ",").split(","))
    except ValueError:
        print(f"error: chunk key {key!r} must be integers separated by commas, e.g. 0,3,5", file=sys.stderr)
        return 2
    if index.endswith(".cri.parquet"):
        from chunkindex.indexes.flat import open_index

        found = open_index(index).refs(array, parts)
        if found is None:
            print("(no data: reads as the fill value)")
        elif "raw" in found:
            print(f"(inline: {len(found['raw'])} bytes)")
        else:
            print(f"{found['url']}\t{found['offset']}\t{found['length']}")
        return 0
    ref = lookup_reference(index, array, parts)
    if ref.path is not None:
        print(f"{ref.path}\t{ref.offset}\t{ref.size}")
    elif ref.raw_bytes is not None:
        print(f"(inline: {ref.raw_bytes} bytes)")
    else:
        print("(no data: reads as the fill value)")
    return 0


class _PandasBlocker(importlib.abc.MetaPathFinder):
    """Refuses to import pandas (see `_without_pandas`)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is kept out of `chunkindex index`", name=name)


def _without_pandas() -> None:
    """pyarrow imports pandas, when installed, on its first conversion
    (0.35-0.6 s of a sub-second process) and works without it; only
    validation (fsspec's reference reader) needs it."""
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _PandasBlocker())


def _without_huge_pages() -> None:
    """Stop numpy asking for transparent huge pages on large arrays: where
    the kernel compacts memory for them (THP defrag "madvise"), first touching
    the write step's large arrays stalls (measured in scripts/_step.py)."""
    import numpy as np

    setter = getattr(getattr(np, "_core", np).multiarray, "_set_madvise_hugepage", None)
    if setter is not None:
        setter(False)


def _progress_bars() -> ProgressFactory | None:
    """tqdm bars on stderr when it is a terminal; None (quiet) otherwise."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    def factory(what: str) -> Callable[[int, int], None]:
        bar: list[Any] = []

        def update(done: int, total: int) -> None:
            if not bar:
                bar.append(tqdm(total=total, desc=what, unit="", unit_scale=True, leave=False, file=sys.stderr))
            bar[0].update(done - bar[0].n)
            if done >= total:
                bar[0].close()

        return update

    return factory


def _recipe_for(args: argparse.Namespace) -> tuple[Recipe, dict[str, Any] | None]:
    """The recipe `chunkindex index` runs: --recipe (with SOURCE and options
    overriding it), or one inferred from SOURCE (returned with its document)."""
    import dataclasses

    from chunkindex.infer import infer_recipe

    kinds = tuple(args.kinds) if args.kinds else None
    if args.recipe is None:
        return infer_recipe(args.source, glob=args.glob, pattern=args.pattern, fmt=args.format,
                            kinds=kinds or ("kerchunk-parquet",), variables=tuple(args.variable or ()),
                            recipe_id=args.id)
    from chunkindex.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    source = dataclasses.replace(recipe.source, url=args.source, template=None,
                                 glob=args.glob if args.glob or args.pattern else recipe.source.glob,
                                 pattern=args.pattern if args.glob or args.pattern else recipe.source.pattern)
    output = dataclasses.replace(recipe.output, kinds=kinds or recipe.output.kinds)
    return dataclasses.replace(recipe, source=source, output=output), None


def _index(args: argparse.Namespace) -> int:
    if not args.validate:
        _without_pandas()
    _without_huge_pages()
    import yaml

    from chunkindex.pipeline import run_recipe

    start = time.perf_counter()
    recipe, doc = _recipe_for(args)
    out = Path(args.out or ".")
    if doc is not None:
        text = yaml.safe_dump(doc, sort_keys=False)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{recipe.id}.yaml").write_text(text)
        if not args.quiet:
            print(f"# the recipe inferred (saved as {out / f'{recipe.id}.yaml'}; copy it to "
                  f"recipes/{recipe.id}.yaml to run the workflow on it):")
            print(text.rstrip())
    result = run_recipe(recipe, ".", out, validate=args.validate, threads=args.threads, progress=_progress_bars())
    summary = result.summary
    print(f"indexed {result.files:,} file{'s' if result.files != 1 else ''}: {summary.refs:,} references in {len(summary.refs_per_array)} arrays "
          f"({time.perf_counter() - start:.2f} s)")
    for name, path in result.outputs.items():
        print(f"  {name}: {path}")
    for note in summary.notes:
        print(f"  note: {note}")
    if result.validation is not None:
        _print_report(result.validation)
    elif not args.quiet:
        recipe_file = args.recipe or out / f"{recipe.id}.yaml"
        print(f"validate with: chunkindex validate {result.index} --recipe {recipe_file}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from chunkindex.indexes.kerchunk import KerchunkIndex
    from chunkindex.pipeline import validate_recipe_index
    from chunkindex.recipe import load_recipe
    from chunkindex.validate import ValidationFailed

    recipe_path = args.recipe
    if recipe_path is None:
        # `chunkindex index` saves the recipe beside the index as <id>.yaml.
        recipe_id = KerchunkIndex.open(args.index).metadata.get(".zattrs", {}).get("chunkindex_recipe")
        candidates = [Path(args.index).parent / f"{recipe_id}.yaml", Path("recipes") / f"{recipe_id}.yaml"]
        recipe_path = next((c for c in candidates if recipe_id and c.is_file()), None)
        if recipe_path is None:
            raise FileNotFoundError(f"{args.index}: give --recipe (looked for "
                                    f"{' and '.join(map(str, candidates))} of recipe {recipe_id!r})")
    try:
        report = validate_recipe_index(load_recipe(recipe_path), args.index)
    except ValidationFailed as failed:
        print(failed.report.summary() if failed.report else str(failed))
        return 1
    _print_report(report)
    return 0


def _print_report(report: ValidationReport) -> None:
    print(report.summary())
    for note in report.notes:
        print(f"  note: {note}")


def _query(args: argparse.Namespace) -> int:
    import json

    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from chunkindex.geo.query import Query, parse_time_range, query_index

    try:
        bbox = tuple(float(v) for v in args.bbox.split(","))
    except ValueError:
        bbox = ()
    if len(bbox) != 4:
        raise ValueError(f"--bbox {args.bbox!r}: expected MINX,MINY,MAXX,MAXY")
    start, end = parse_time_range(args.time) if args.time else (None, None)
    query = Query(bbox, args.crs, start, end, args.variable, args.level)  # type: ignore[arg-type]
    table = query_index(args.index, query, with_geometry=args.format == "parquet")
    if args.format == "parquet":
        if not args.output:
            raise ValueError("--format parquet needs --output FILE")
        pq.write_table(table, args.output)
        print(f"{table.num_rows} chunks -> {args.output}", file=sys.stderr)
    elif args.format == "csv":
        pacsv.write_csv(table, args.output or sys.stdout.buffer)
    elif args.format == "json":
        rows = table.to_pylist()
        text = json.dumps(rows, default=str, indent=None)
        if args.output:
            Path(args.output).write_text(text + "\n")
        else:
            sys.stdout.write(text + "\n")
    else:
        print(table.to_pandas().to_string(max_rows=args.max_rows) if table.num_rows else "(no chunks)")
        print(f"{table.num_rows} chunks", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chunkindex", description="Chunk-reference indexes GDAL reads natively.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")
    sub = parser.add_subparsers(dest="command", required=True)
    p_index = sub.add_parser("index", help="index a folder, URL or file in one process (no Snakemake, no recipe)")
    p_index.add_argument("source", help="a local folder, one file, or an s3:// / https:// prefix")
    p_index.add_argument("--glob", help="files to take, e.g. '*.tif' (any depth)")
    p_index.add_argument("--pattern", help="file name pattern, e.g. '{time:%%Y%%m%%d}_{variable}.tif'")
    p_index.add_argument("--format", choices=["cog", "netcdf4", "hdf5"], help="default: from the file suffix")
    p_index.add_argument("--out", help="folder for the index files (default: the current folder)")
    p_index.add_argument("--recipe", help="run this recipe on SOURCE instead of inferring one")
    p_index.add_argument("--kinds", nargs="+", metavar="KIND", help="output kinds (recipe output.kinds), "
                         "e.g. kerchunk-parquet kerchunk-json cri-parquet footprints")
    p_index.add_argument("--variable", action="append", help="an array to index (repeatable)")
    p_index.add_argument("--id", help="the recipe id, naming the index files (default: from SOURCE)")
    p_index.add_argument("--validate", action="store_true", help="validate with GDAL against the sources")
    p_index.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                         help="threads for writing (default: the CPUs this process may use)")
    p_index.add_argument("-q", "--quiet", action="store_true", help="do not print the inferred recipe")
    p_validate = sub.add_parser("validate", help="check an index against its sources with GDAL")
    p_validate.add_argument("index", help="a Kerchunk Parquet folder or Kerchunk JSON file")
    p_validate.add_argument("--recipe", help="the recipe it was written from (default: <id>.yaml beside it)")
    p_doctor = sub.add_parser("doctor", help="check Python, GDAL and its drivers, and the packages")
    p_doctor.add_argument("--gdal-only", action="store_true")
    p_info = sub.add_parser("info", help="arrays, shapes, chunks, codecs, readers, references, files of an index")
    p_info.add_argument("index", help="a Kerchunk Parquet folder, Kerchunk JSON file or *.cri.parquet")
    p_refs = sub.add_parser("refs", help="the file, offset and size of one chunk")
    p_refs.add_argument("index")
    p_refs.add_argument("array")
    p_refs.add_argument("chunk", help="chunk indices, e.g. 0,3,5")
    p_query = sub.add_parser("query", help="the chunks whose footprint intersects a box (from a footprint index)")
    p_query.add_argument("index", help="a footprint GeoParquet (<id>.footprints.parquet)")
    p_query.add_argument("--bbox", required=True, help="MINX,MINY,MAXX,MAXY (lon/lat: MINX > MAXX crosses 180)")
    p_query.add_argument("--crs", default="EPSG:4326", help="CRS of --bbox (default EPSG:4326 lon/lat)")
    p_query.add_argument("--time", help="START/END, ISO 8601 (either side may be empty)")
    p_query.add_argument("--variable")
    p_query.add_argument("--level", type=int)
    p_query.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    p_query.add_argument("--output", help="file to write (required for parquet)")
    p_query.add_argument("--max-rows", type=int, default=20, help="rows shown by --format table")
    p_convert = sub.add_parser("convert", help="Kerchunk Parquet/JSON or a Zarr v2/v3 store -> CRI Parquet, "
                               "or CRI Parquet -> Kerchunk Parquet/JSON (by the file names)")
    p_convert.add_argument("source", help="a Kerchunk Parquet folder or JSON file, a Zarr store (path or URL), "
                           "or a *.cri.parquet file")
    p_convert.add_argument("target", help="*.cri.parquet, or a Kerchunk Parquet folder / *.json")
    p_convert.add_argument("--store-option", action="append", default=[], metavar="KEY=VALUE",
                           help="obstore option for a remote Zarr store (endpoint, region, skip_signature, ...)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `chunkindex` command line.

    Args:
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        The exit status: 0 done, 1 validation failed, 2 bad input (one clear line on stderr).

    Example:
        >>> main(["info", "results/ghrsst-demo/index/ghrsst-demo.parq"])  # doctest: +SKIP
        0
    """
    args = _parser().parse_args(argv)
    # Quiet unless asked: what a run noticed is in its summary and printed below.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    from chunkindex.infer import InferenceError
    from chunkindex.recipe import RecipeError
    from chunkindex.sources.listing import ListingError

    try:
        if args.command == "index":
            return _index(args)
        if args.command == "validate":
            return _validate(args)
        if args.command == "doctor":
            from chunkindex import doctor

            return doctor.main(["--gdal-only"] if args.gdal_only else [])
        if args.command == "info":
            return _cri_info(args.index) if args.index.endswith(".cri.parquet") else _info(args.index)
        if args.command == "convert":
            return _convert(args.source, args.target, args.store_option)
        if args.command == "query":
            return _query(args)
        return _refs(args.index, args.array, args.chunk)
    except (InferenceError, RecipeError, ListingError, ValueError, KeyError, IndexError, FileNotFoundError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
