"""A recipe inferred from a folder, a URL or one file, for `chunkindex index`
(indexing without writing a recipe first). The inferred document is printed
so that it can be saved as `recipes/<id>.yaml` and run by the workflow.

What is inferred comes from the data, never from names alone: the format
from the file suffix (or `--format`), NetCDF4/HDF5 variables and their
concatenation dimension from the first file's own dimension scales, COG
times from a `{time:...}` field of `--pattern` when given.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from chunkindex.recipe import Recipe, RecipeError, load_schema, recipe_from_dict

SUFFIXES = {".tif": "cog", ".tiff": "cog", ".nc": "netcdf4", ".nc4": "netcdf4", ".h5": "hdf5", ".hdf5": "hdf5",
            ".he5": "hdf5"}
# The glob taken when none is given (fnmatch's `*` crosses folders).
DEFAULT_GLOBS = {"cog": "*.tif", "netcdf4": "*.nc", "hdf5": "*.h5"}


class InferenceError(ValueError):
    """The source does not say enough to build a recipe (the message says what to give)."""


def _is_url(source: str) -> bool:
    return urlparse(source).scheme in {"s3", "http", "https", "gs", "az", "memory"}


def _first_file(folder: Path, suffixes: tuple[str, ...]) -> Path | None:
    """The first file under `folder` (any depth, names sorted) with one of `suffixes`."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(suffixes):
                return Path(root) / name
    return None


def _format_of(name: str) -> str | None:
    return SUFFIXES.get(Path(name).suffix.lower())


def _recipe_id(source: str) -> str:
    stem = Path(urlparse(source).path.rstrip("/")).name or "index"
    stem = Path(stem).stem if Path(stem).suffix.lower() in SUFFIXES else stem
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
    return slug if slug and slug[0].isalnum() else f"index-{slug}".rstrip("-")


def _hdf_layout(path: Path, variables: tuple[str, ...]) -> tuple[tuple[str, ...], str, str | None]:
    """(variables, concat dimension, its units) read from one NetCDF4/HDF5 file.

    Variables: every dataset that is not a dimension scale, unless named.
    The concatenation dimension: the first dimension of the first variable
    that has a coordinate variable (its units come with it).
    """
    import h5py

    with h5py.File(path, "r") as h5:
        datasets = {name: obj for name, obj in h5.items() if isinstance(obj, h5py.Dataset)}
        if not variables:
            variables = tuple(name for name, obj in datasets.items()
                              if not obj.is_scale and obj.ndim >= 2 and obj.dtype.kind in "iuf")
        if not variables:
            raise InferenceError(f"{path}: no numeric variable of two or more dimensions; name one with --variable")
        missing = [v for v in variables if v not in datasets]
        if missing:
            raise InferenceError(f"{path}: no variable {', '.join(missing)} (variables: {', '.join(datasets)})")
        first = datasets[variables[0]]
        for dim in first.dims:
            scales = list(dim.values())
            if scales:
                scale = scales[0]
                units = scale.attrs.get("units")
                units = units.decode() if isinstance(units, bytes) else units
                return variables, scale.name.rsplit("/", 1)[-1], units
        raise InferenceError(f"{path}:{variables[0]}: no dimension has a coordinate variable to concatenate "
                             "the files along")


def _locate(source: str, glob: str | None, pattern: str | None, fmt: str | None
            ) -> tuple[str, str | None, str, Path | None]:
    """(store URL, the one file's name or None, format, a local file to read the layout from)."""
    url, single = source, None
    if not _is_url(source):
        path = Path(source).expanduser().resolve()
        if path.is_file() or (not path.exists() and path.suffix.lower() in SUFFIXES):
            url, single = str(path.parent), path.name
        else:
            url = str(path)
    if single is not None and (glob or pattern):
        raise InferenceError(f"{source} is one file: --glob and --pattern select files of a folder")
    fmt = fmt or _format_of(pattern or glob or single or "")
    local_first: Path | None = None
    if not _is_url(url):
        if not Path(url).is_dir():
            raise InferenceError(f"{source}: no such file or folder")
        if single is not None:
            local_first = Path(url) / single
        elif fmt != "cog":
            suffixes = tuple(s for s, f in SUFFIXES.items() if fmt is None or f == fmt)
            local_first = _first_file(Path(url), suffixes)
            if local_first is None:
                raise InferenceError(f"{source}: no {fmt or 'TIFF, NetCDF or HDF5'} file found; give --glob "
                                     "or --pattern (and --format)")
        fmt = fmt or _format_of(local_first.name if local_first else "")
    if fmt is None:
        raise InferenceError(f"{source}: cannot tell the format from the names; give --format cog|netcdf4|hdf5")
    return url, single, fmt, local_first


def _arrays(source: str, fmt: str, pattern: str | None, variables: tuple[str, ...], local_first: Path | None
            ) -> tuple[tuple[str, ...], dict[str, Any]]:
    """(variables, concat section): COG files stack along time (from the
    names' `{time}` field when the pattern has one); NetCDF4/HDF5 files
    concatenate along the first file's coordinate dimension."""
    if fmt == "cog":
        if not variables:
            if "{variable}" in (pattern or ""):
                raise InferenceError("--pattern has a {variable} field: name its values with --variable")
            variables = ("data",)
        concat: dict[str, Any] = {"dim": "time", "from": "filename"}
        if pattern and "{time" in pattern:
            concat["units"] = "days since 1970-01-01"
        return variables, concat
    if local_first is None:
        raise InferenceError(f"{source}: a remote NetCDF4/HDF5 source needs --variable (and the files "
                             "must share a coordinate variable to concatenate along)")
    variables, dim, units = _hdf_layout(local_first, variables)
    return variables, {"dim": dim, "from": "variable", **({"units": units} if units else {})}


def infer_recipe_document(
    source: str,
    *,
    glob: str | None = None,
    pattern: str | None = None,
    fmt: str | None = None,
    kinds: tuple[str, ...] = ("kerchunk-parquet",),
    variables: tuple[str, ...] = (),
    recipe_id: str | None = None,
    sample_chunks: int = 20,
) -> dict[str, Any]:
    """A recipe document for indexing `source` without writing a recipe first.

    Args:
        source: a local folder, one local file (it alone is indexed), or an
            `s3://`/`https://` prefix.
        glob: files to take under `source` (default: every file of the format, any depth).
        pattern: a file-name pattern instead (`{time:%Y%m%d}`, `{variable}` fields):
            COG files then stack along time.
        fmt: `cog`, `netcdf4` or `hdf5` (default: from the files' suffix).
        kinds: the recipe's `output.kinds`, passed through as given.
        variables: the arrays to index (default: `data` for COG files, every
            numeric variable of the first file for NetCDF4/HDF5).
        recipe_id: the recipe id (default: from the source's name).
        sample_chunks: chunks validation samples per array.

    Returns:
        The recipe as a plain document (what `recipes/<id>.yaml` would hold),
        not yet validated: `infer_recipe` validates it.

    Raises:
        InferenceError: the source does not say enough; the message says which option to give.

    Example:
        >>> doc = infer_recipe_document("resources/fixtures/edge-cases/tiff/sparse.tif")
        >>> doc["format"], doc["source"]["glob"], doc["variables"]
        ('cog', 'sparse.tif', [{'name': 'data'}])
    """
    url, single, fmt, local_first = _locate(source, glob, pattern, fmt)
    if single is not None:
        glob = single
    src: dict[str, Any] = {"url": url}
    if pattern:
        src["pattern"] = pattern
    else:
        src["glob"] = glob or DEFAULT_GLOBS[fmt]
    variables, concat = _arrays(source, fmt, pattern, variables, local_first)
    rid = recipe_id or _recipe_id(source)
    return {
        "id": rid,
        "title": f"{rid} (inferred by chunkindex index from {source})",
        "format": fmt,
        "source": src,
        "variables": [{"name": v} for v in variables],
        "concat": concat,
        "output": {"kinds": list(kinds)},
        "validation": {"sample_chunks": sample_chunks, "seed": 0},
    }


def infer_recipe(source: str, **options: Any) -> tuple[Recipe, dict[str, Any]]:
    """A validated Recipe for `source`, and its document (see `infer_recipe_document`).

    Args:
        source: a local folder, one local file, or an `s3://`/`https://` prefix.
        **options: `glob`, `pattern`, `fmt`, `kinds`, `variables`, `recipe_id`, `sample_chunks`.

    Returns:
        (the Recipe with the schema's defaults, the document as inferred).

    Raises:
        InferenceError: the source does not say enough.
        RecipeError: an output kind the recipe schema does not know.

    Example:
        >>> recipe, doc = infer_recipe("resources/fixtures/bran")
        >>> recipe.format, recipe.concat.dim, recipe.variable_names
        ('netcdf4', 'Time', ('temp',))
    """
    doc = infer_recipe_document(source, **options)
    _check_kinds(doc["output"]["kinds"], source)
    return recipe_from_dict(doc), doc


def _check_kinds(kinds: list[str], source: str) -> None:
    """The kinds given, against the recipe schema's list.

    The rest of an inferred document is built here field by field as the
    schema describes (tests validate inferred documents with the schema), so
    jsonschema's import (0.1-0.2 s of a sub-second command) is spared.
    """
    known = load_schema("recipe")["properties"]["output"]["properties"]["kinds"]["items"]["enum"]
    unknown = [k for k in kinds if k not in known]
    if unknown or len(set(kinds)) != len(kinds):
        problem = (f"unknown {', '.join(map(repr, unknown))}" if unknown else "repeated kinds")
        raise RecipeError(f"the recipe inferred for {source} is not valid:\n  - field output.kinds: {problem}; "
                          f"expected some of: {', '.join(known)}")
