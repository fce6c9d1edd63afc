"""NetCDF4/HDF5 variables of many files concatenated into one array each."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chunkindex.codecs import CodecChain
from chunkindex.formats.hdf.chain import hdf5_chain
from chunkindex.formats.hdf.headers import HdfLayoutError
from chunkindex.model import (
    ArraySpec,
    AssembledIndex,
    ChunkGrid,
    ReferenceColumns,
    coordinate_array,
    stacked_numbers,
)
from chunkindex.recipe import Recipe, Variable

log = logging.getLogger(__name__)


# CF ways a coordinate says it is the y or x axis (attribute -> values, upper-cased).
_CF_AXES = {
    "Y": {"axis": {"Y"}, "cartesian_axis": {"Y"}, "standard_name": {"LATITUDE", "PROJECTION_Y_COORDINATE"},
          "units": {"DEGREES_NORTH", "DEGREE_NORTH", "DEGREES_N", "DEGREE_N"}},
    "X": {"axis": {"X"}, "cartesian_axis": {"X"}, "standard_name": {"LONGITUDE", "PROJECTION_X_COORDINATE"},
          "units": {"DEGREES_EAST", "DEGREE_EAST", "DEGREES_E", "DEGREE_E"}},
}


def spatial_dims(dims: list[str], coords: dict[str, Any]) -> tuple[str, str] | None:
    """(y, x) dimensions, from the CF attributes of their coordinate variables
    (axis, cartesian_axis, standard_name, units); None when the file does not say.

    Example:
        >>> spatial_dims(["t", "a", "b"], {"a": {"attrs": {"axis": "Y"}}, "b": {"attrs": {"units": "degrees_east"}}})
        ('a', 'b')
    """
    found: dict[str, str] = {}
    for dim in dims:
        attrs = coords.get(dim, {}).get("attrs", {})
        for axis, ways in _CF_AXES.items():
            if axis not in found and any(str(attrs.get(key, "")).upper() in values for key, values in ways.items()):
                found[axis] = dim
    return (found["Y"], found["X"]) if len(found) == 2 else None


def _file_order(recipe: Recipe, variable: Variable, meta: list[dict[str, Any]], urls: dict[int, str],
                notes: list[str]) -> tuple[list[dict[str, Any]], list[int], int]:
    """(the files' layouts, the files in coordinate order, the concat axis)
    after checking that their layouts agree in everything but the concat
    dimension's length.

    Files whose variable lacks the concat dimension are either one granule each
    (one concat value per file: stacked along a new outer concat dimension, the
    layouts in `meta` gaining it) or static (no concat value at all, e.g. the
    2-D coordinates of a curvilinear grid: the first file's alone, noted)."""
    concat = recipe.concat.dim
    order = sorted(range(len(meta)), key=lambda i: (meta[i]["concat_values"] or [float(i)])[0])
    first = meta[order[0]]
    dims = first["dims"]
    if concat not in dims and len(meta) > 1:
        if all(len(m["concat_values"]) == 1 for m in meta):
            for m in meta:
                m["dims"], m["shape"], m["chunks"] = [concat, *m["dims"]], [1, *m["shape"]], [1, *m["chunks"]]
            dims = first["dims"]
        elif not any(m["concat_values"] for m in meta):
            notes.append(f"{variable.name}: has no {concat} dimension; indexed from {urls[first['file_id']]} alone")
            meta, order = [first], [0]
    if concat not in dims and len(meta) > 1:
        raise HdfLayoutError(f"{urls[first['file_id']]}:{variable.name}: has no dimension {concat!r} "
                             f"to concatenate {len(meta)} files along (dimensions: {', '.join(dims)})")
    # A single file without the concat dimension is indexed as it is.
    axis = dims.index(concat) if concat in dims else 0
    for i in order[1:]:
        other = meta[i]
        for key in ("dims", "chunks", "dtype", "codecs"):
            if other[key] != first[key]:
                raise HdfLayoutError(f"{urls[other['file_id']]}:{variable.name}: {key} {other[key]} differs "
                                     f"from {urls[first['file_id']]}'s {first[key]}")
        other_shape = [s for k, s in enumerate(other["shape"]) if k != axis]
        first_shape = [s for k, s in enumerate(first["shape"]) if k != axis]
        if other_shape != first_shape:
            raise HdfLayoutError(
                f"{urls[other['file_id']]}:{variable.name}: shape {tuple(other['shape'])} does not line up "
                f"with {urls[first['file_id']]}'s {tuple(first['shape'])} (only {concat} may differ)")
    step = first["chunks"][axis]
    for i in order[:-1]:
        length = meta[i]["shape"][axis]
        if length % step:
            raise HdfLayoutError(f"{urls[meta[i]['file_id']]}:{variable.name}: {concat} length {length} is not "
                                 f"a multiple of its chunk size {step}, so the files' chunks cannot line up")
    return meta, order, axis


def _concat_values(recipe: Recipe, variable: Variable, meta: list[dict[str, Any]], order: list[int],
                   notes: list[str]) -> list[float]:
    """The concatenated coordinate's values; an overlap is refused, a gap noted."""
    concat = recipe.concat.dim
    values = [v for i in order for v in meta[i]["concat_values"]]
    if values:
        diffs = np.diff(values)
        if (diffs <= 0).any():
            bad = int(np.argmax(diffs <= 0))
            raise HdfLayoutError(f"recipe {recipe.id}: {concat} overlaps or goes back in time at "
                                 f"value {values[bad + 1]} (after {values[bad]})")
        typical = float(np.median(diffs)) if diffs.size else 0.0
        for k in np.flatnonzero(diffs > 1.5 * typical) if typical else []:
            notes.append(f"{variable.name}: gap in {concat} between {values[k]} and {values[k + 1]}")
    return values


def _concatenated(rows: pa.Table, meta: list[dict[str, Any]], order: list[int], axis: int, urls: dict[int, str]
                  ) -> tuple[list[int], ReferenceColumns, list[str]]:
    """(shape, reference columns, urls) of the files' chunks stacked along `axis`."""
    first = meta[order[0]]
    chunks = first["chunks"]
    step = chunks[axis]
    shape = list(first["shape"])
    shape[axis] = int(sum(meta[i]["shape"][axis] for i in order))
    grid = ChunkGrid.of(shape, chunks)
    columns = ReferenceColumns.empty(grid.n_chunks)
    url_list = []
    start = 0
    position = {fid: k for k, fid in enumerate(rows["file_id"].to_pylist())}
    for slot, i in enumerate(order):
        row = position[meta[i]["file_id"]]
        local_shape = meta[i]["shape"]
        numbers = rows["chunk_number"][row].values.to_numpy()
        global_numbers = stacked_numbers(grid, axis, start // step, ChunkGrid.of(local_shape, chunks).counts,
                                         numbers)
        columns.place(global_numbers, slot, rows["offsets"][row].values.to_numpy(),
                      rows["sizes"][row].values.to_numpy())
        url_list.append(urls[meta[i]["file_id"]])
        start += local_shape[axis]
    return shape, columns, url_list


def _coordinates(recipe: Recipe, meta: list[dict[str, Any]], order: list[int], values: list[float],
                 urls: dict[int, str], coordinate_arrays: dict[str, ArraySpec]) -> None:
    """Coordinates: the concat one from every file, the others from the first file (they must agree)."""
    concat = recipe.concat.dim
    first = meta[order[0]]
    coords = json.loads(first["coords"])
    for i in order[1:]:
        other = json.loads(meta[i]["coords"])
        for name, coord in coords.items():
            if name != concat and name in other and not np.allclose(other[name]["values"], coord["values"]):
                raise HdfLayoutError(f"{urls[meta[i]['file_id']]}: coordinate {name} differs from "
                                     f"{urls[first['file_id']]}'s")
    for name, coord in coords.items():
        if name in recipe.variable_names:
            continue  # indexed as a variable of its own
        if name == concat:
            coord_attrs = dict(coord["attrs"])
            if recipe.concat.units:
                coord_attrs["units"] = recipe.concat.units
            coordinate_arrays.setdefault(name, coordinate_array(name, np.asarray(values, np.float64), coord_attrs))
        else:
            coordinate_arrays.setdefault(name, coordinate_array(name, np.asarray(coord["values"]), coord["attrs"]))


def assemble_hdf(recipe: Recipe, manifest: pa.Table, headers: pa.Table) -> AssembledIndex:
    """Concatenate each variable's files along the concat dimension, in
    coordinate order whatever the listing order; report gaps, refuse overlaps.

    Args:
        recipe: the recipe (variables, concat dimension and units).
        manifest: the listing.
        headers: every file's variables table (`read_batch`), concatenated.

    Returns:
        The assembled arrays, with notes (gaps in the concat coordinate).

    Raises:
        HdfLayoutError: files that do not line up (naming the file and what differs).
    """
    result = AssembledIndex(arrays=[])
    urls = dict(zip(manifest["file_id"].to_pylist(), manifest["url"].to_pylist()))
    coordinate_arrays: dict[str, ArraySpec] = {}
    for variable in recipe.variables:
        rows = headers.filter(pc.equal(headers["variable"], variable.name))
        meta = rows.drop_columns(["chunk_number", "offsets", "sizes", "inline_data"]).to_pylist()
        inline = [v for v in rows["inline_data"].to_pylist() if v is not None]
        if inline and rows.num_rows > 1:
            raise HdfLayoutError(f"recipe {recipe.id}: {variable.name} is stored compact (inline in the object "
                                 "header) and cannot be concatenated across files")
        if not meta:
            raise HdfLayoutError(f"recipe {recipe.id}: no file holds variable {variable.name!r}")
        meta, order, axis = _file_order(recipe, variable, meta, urls, result.notes)
        values = _concat_values(recipe, variable, meta, order, result.notes)
        shape, columns, url_list = _concatenated(rows, meta, order, axis, urls)
        first = meta[order[0]]
        dtype = np.dtype(first["dtype"])
        chain = hdf5_chain(json.loads(first["codecs"]), dtype, urls[first["file_id"]])
        attrs = json.loads(first["attrs"])
        attrs.update(variable.attributes)
        fill = first["fill_value"]
        if "_FillValue" in attrs:
            fill = attrs["_FillValue"]
        if fill is not None and dtype.kind in "iu":
            fill = int(fill)
        attrs["chunkindex"] = {"source_format": recipe.format, "codec": chain.as_attribute(),
                               "gdal_decodable": chain.gdal_decodable,
                               "extractor": first["extractor"], "source_variable": variable.name_in_file}
        array = ArraySpec(name=variable.name, dims=tuple(first["dims"]), shape=tuple(shape),
                          chunks=tuple(first["chunks"]), dtype=dtype.str, fill_value=fill if fill is not None else 0,
                          chain=chain, attrs=attrs, urls=url_list, url_index=columns.url_index,
                          offsets=columns.offsets, sizes=columns.sizes,
                          spatial_dims=spatial_dims(first["dims"], json.loads(first["coords"])))
        if inline:  # compact: the whole array inline, uncompressed
            array.chain = CodecChain(None, (), "HDF5 compact (inline)")
            array.attrs["chunkindex"]["codec"] = array.chain.as_attribute()
            array.attrs["chunkindex"]["inline_source"] = url_list[0]
            array.inline = inline[0]
        result.add_data_array(array, recipe.output.gdal_readable_variant)
        _coordinates(recipe, meta, order, values, urls, coordinate_arrays)
    result.arrays.extend(coordinate_arrays.values())
    return result
