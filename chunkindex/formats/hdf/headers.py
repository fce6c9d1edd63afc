"""NetCDF4/HDF5 headers: each variable's chunk table, layout and attributes.

Two extractors give the same references: h5py's `Dataset.id.chunk_iter`
(fast: one B-tree walk per variable) and GDAL's multidimensional
`GDALMDArray.GetRawBlockInfo` (language-agnostic, one call per chunk, slower
the further into the file). The recipe picks one (`headers.extractor`); the
other cross-checks in validation. The result is one Arrow row per (file,
variable), with the chunk table as list columns, never an object per chunk.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

from chunkindex.formats.hdf.chain import FILTER_NAMES
from chunkindex.model import ChunkGrid, list_column
from chunkindex.recipe import Recipe
from chunkindex.sources.stores import ObjectFile, StoreSpec, gdal_path, is_local

log = logging.getLogger(__name__)

VARIABLES_SCHEMA = pa.schema([
    ("file_id", pa.int32()),
    ("variable", pa.string()),
    ("dims", pa.list_(pa.string())),
    ("shape", pa.list_(pa.int64())),
    ("chunks", pa.list_(pa.int64())),
    ("dtype", pa.string()),
    ("codecs", pa.string()),          # JSON: the HDF5 filter pipeline, as read
    ("fill_value", pa.float64()),
    ("attrs", pa.string()),           # JSON: the variable's CF attributes
    ("chunk_number", pa.list_(pa.int64())),  # C-order chunk number within this file's grid
    ("offsets", pa.list_(pa.int64())),
    ("sizes", pa.list_(pa.int64())),
    ("inline_data", pa.binary()),     # a compact dataset's bytes (stored in the object header)
    ("concat_values", pa.list_(pa.float64())),  # the file's values of the concat coordinate
    ("coords", pa.string()),          # JSON: other coordinate variables {name: {values, attrs}}
    ("extractor", pa.string()),
    ("seconds", pa.float64()),
])

KEPT_ATTRIBUTES = ("scale_factor", "add_offset", "_FillValue", "missing_value", "valid_range", "valid_min",
                   "valid_max", "units", "long_name", "standard_name", "calendar", "axis", "positive",
                   "cell_methods", "cartesian_axis",
                   # Geolocation: CF `coordinates` (2-D latitude/longitude), tie points and scans.
                   "coordinates", "coordinate_interpolation", "scan_lines")


class HdfLayoutError(ValueError):
    """Files or variables that cannot be indexed or concatenated."""


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _attributes(obj: Any) -> dict[str, Any]:
    out = {}
    for key in KEPT_ATTRIBUTES:
        if key in obj.attrs:
            value = obj.attrs[key]
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            elif isinstance(value, np.ndarray) and value.size == 1:
                value = value.reshape(()).item()
            out[key] = value
    return json.loads(json.dumps(out, default=_json_default))


def _filters(dataset: Any) -> list[dict[str, Any]]:
    plist = dataset.id.get_create_plist()
    out = []
    for i in range(plist.get_nfilters()):
        code, _flags, values, name = plist.get_filter(i)
        out.append({"code": int(code), "name": FILTER_NAMES.get(int(code), name.decode(errors="replace")),
                    "values": [int(v) for v in values]})
    return out


def open_h5(store: Any, path: str, url: str) -> Any:
    """h5py.File of a local path, or of an object in `store` (S3, HTTP)."""
    import h5py

    if is_local(url):
        return h5py.File(gdal_path(url), "r")
    return h5py.File(ObjectFile(store, path), "r")


def _dim_names(dataset: Any) -> list[str]:
    if dataset.is_scale and dataset.ndim == 1:  # a coordinate variable is its own dimension
        return [dataset.name.rsplit("/", 1)[-1]]
    names = []
    for i, dim in enumerate(dataset.dims):
        attached = [scale.name.rsplit("/", 1)[-1] for scale in dim.values()]
        names.append(dim.label or (attached[0] if attached else f"dim_{i}"))
    return names


def _h5_chunks(dataset: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(chunk numbers, offsets, sizes) of every written chunk, via h5py."""
    shape = dataset.shape
    if dataset.chunks is None:  # contiguous: one chunk, the whole array
        offset = dataset.id.get_offset()
        if offset is None:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.zeros(1, np.int64), np.array([offset], np.int64), np.array([dataset.id.get_storage_size()], np.int64)
    grid = ChunkGrid.of(shape, dataset.chunks).counts
    records: list[tuple[tuple[int, ...], int, int, int]] = []
    dataset.id.chunk_iter(lambda info: records.append((info.chunk_offset, info.byte_offset, info.size, info.filter_mask)))
    if not records:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    logical = np.array([r[0] for r in records], dtype=np.int64) // np.array(dataset.chunks, dtype=np.int64)
    masks = np.array([r[3] for r in records], dtype=np.int64)
    if masks.any():
        raise HdfLayoutError(f"{dataset.file.filename}:{dataset.name}: {int((masks != 0).sum())} chunks skip "
                             "filters (HDF5 filter mask), which a Zarr chain cannot express")
    numbers = np.ravel_multi_index(tuple(logical.T), grid).astype(np.int64)
    return numbers, np.array([r[1] for r in records], np.int64), np.array([r[2] for r in records], np.int64)


def gdal_chunks(path: str, variable: str, progress: Callable[[int, int], None] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(chunk numbers, offsets, sizes, block info strings) via GDAL's GetRawBlockInfo."""
    from osgeo import gdal

    gdal.UseExceptions()
    ds = gdal.OpenEx(path, gdal.OF_MULTIDIM_RASTER)
    arr = ds.GetRootGroup().OpenMDArray(variable)
    shape = [d.GetSize() for d in arr.GetDimensions()]
    blocks = arr.GetBlockSize()
    grid = [math.ceil(s / b) if b else 1 for s, b in zip(shape, blocks)]
    total = int(np.prod(grid))
    numbers, offsets, sizes, infos = [], [], [], []
    for n, index in enumerate(np.ndindex(*grid)):
        info = arr.GetRawBlockInfo([int(i) for i in index])
        if info is not None and info.GetSize() > 0 and info.GetOffset() > 0:
            numbers.append(n)
            offsets.append(info.GetOffset())
            sizes.append(info.GetSize())
            infos.append(";".join(info.GetInfo() or []))
        if progress is not None and (n + 1) % 5000 == 0:
            progress(n + 1, total)
    return np.array(numbers, np.int64), np.array(offsets, np.int64), np.array(sizes, np.int64), infos


def read_file(store: Any, path: str, url: str, file_id: int, recipe: Recipe,
              extractor: str = "hdf5", etag: str | None = None) -> list[dict[str, Any]]:
    """One row per recipe variable of one NetCDF4/HDF5 file (a remote one
    only if its ETag is still the listing's `etag`)."""
    import time

    if etag is not None and not url.startswith("/"):
        import obstore
        from obstore.exceptions import BaseError

        try:
            now = obstore.head(store, path).get("e_tag")
        except (BaseError, OSError) as exc:  # not found, refused, unreachable
            raise HdfLayoutError(f"{url}: cannot read it ({exc})") from None
        if now is not None and now != etag:
            raise HdfLayoutError(f"{url}: the object changed since it was listed (its ETag no longer matches "
                                 "the listing's): list again (--forcerun list_sources)")
    rows = []
    try:
        h5 = open_h5(store, path, url)
    except OSError as exc:
        raise HdfLayoutError(f"{url}: not a readable NetCDF4/HDF5 file ({exc})") from None
    with h5:
        concat = recipe.concat.dim
        for variable in recipe.variables:
            name = variable.name_in_file
            if name not in h5:
                raise HdfLayoutError(f"{url}: has no variable {name!r} (variables: {', '.join(sorted(h5.keys()))})")
            dataset = h5[name]
            dims = _dim_names(dataset)
            dtype = dataset.dtype
            if dtype.kind not in "iuf":
                raise HdfLayoutError(f"{url}:{name}: data type {dtype} cannot be indexed (numeric only)")
            start = time.perf_counter()
            if extractor == "gdal":
                if dataset.chunks is not None:
                    grid = ChunkGrid.of(dataset.shape, dataset.chunks).n_chunks
                    if dataset.id.get_num_chunks() != grid:
                        raise HdfLayoutError(
                            f"{url}:{name}: {grid - dataset.id.get_num_chunks()} of {grid} chunks were never "
                            "written, and GDAL's GetRawBlockInfo then reports wrong chunks (it looks them up "
                            "by allocation order, GDAL 3.13.3); use headers.extractor: hdf5 for this archive")
                numbers, offsets, sizes, _ = gdal_chunks(gdal_path(url), name)
            else:
                numbers, offsets, sizes = _h5_chunks(dataset)
            seconds = time.perf_counter() - start
            inline_data = None
            if dataset.chunks is None and numbers.size == 0 and dataset.id.get_storage_size() > 0:
                # Compact layout: the values live in the object header, not at an offset.
                inline_data = np.ascontiguousarray(dataset[()]).tobytes()
            concat_values: list[float] = []
            # A variable without the concat dimension, in a file whose concat
            # coordinate has one value (a swath granule), stacks along it.
            stacks = concat not in dims and concat in h5 and h5[concat].shape == (1,)
            if (concat in dims or stacks) and concat in h5:
                concat_values = [float(v) for v in np.asarray(h5[concat][:], dtype=np.float64)]
            coords = {}
            for dim in dims:
                if dim != concat and dim in h5 and h5[dim].ndim == 1:
                    coords[dim] = {"values": np.asarray(h5[dim][:], dtype=np.float64).tolist(),
                                   "attrs": _attributes(h5[dim])}
            if (concat in dims or stacks) and concat in h5:
                coords[concat] = {"values": [], "attrs": _attributes(h5[concat])}
            fill = dataset.fillvalue
            rows.append({
                "file_id": file_id, "variable": variable.name, "dims": dims, "shape": list(dataset.shape),
                "chunks": list(dataset.chunks or dataset.shape), "dtype": dtype.str,
                "codecs": json.dumps(_filters(dataset)),
                "fill_value": float(fill) if fill is not None else None,
                "attrs": json.dumps(_attributes(dataset)),
                "chunk_number": numbers, "offsets": offsets, "sizes": sizes, "inline_data": inline_data,
                "concat_values": concat_values, "coords": json.dumps(coords),
                "extractor": extractor, "seconds": seconds,
            })
    return rows


def variables_table(rows: list[dict[str, Any]]) -> pa.Table:
    columns: dict[str, Any] = {}
    for name in VARIABLES_SCHEMA.names:
        kind = VARIABLES_SCHEMA.field(name).type
        if name in ("chunk_number", "offsets", "sizes"):
            columns[name] = list_column([np.asarray(r[name], np.int64) for r in rows])
        else:
            columns[name] = pa.array([r[name] for r in rows], kind)
    return pa.table(columns, schema=VARIABLES_SCHEMA)


def read_batch(recipe: Recipe, spec: StoreSpec, batch: pa.Table,
               progress: Callable[[int, int], None] | None = None) -> pa.Table:
    """The variables table of a batch of the manifest (`headers.extractor`: h5py or GDAL)."""
    from chunkindex.sources.stores import open_store

    store = open_store(spec)
    rows: list[dict[str, Any]] = []
    paths, urls, ids = batch["path"].to_pylist(), batch["url"].to_pylist(), batch["file_id"].to_pylist()
    etags = batch["etag"].to_pylist() if "etag" in batch.column_names else [None] * len(paths)
    for done, (path, url, file_id, etag) in enumerate(zip(paths, urls, ids, etags), start=1):
        rows.extend(read_file(store, path, url, file_id, recipe, recipe.headers.extractor, etag))
        if progress is not None:
            progress(done, len(paths))
    return variables_table(rows)
