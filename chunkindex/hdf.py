"""NetCDF4/HDF5 chunk tables, and their concatenation into one array.

Two extractors give the same references: h5py's `Dataset.id.chunk_iter`
(fast: one B-tree walk per variable) and GDAL's multidimensional
`GDALMDArray.GetRawBlockInfo` (language-agnostic, one call per chunk, slower
the further into the file). The recipe picks one (`headers.extractor`); the
other cross-checks in validation. The result is one Arrow row per (file,
variable), with the chunk table as list columns, never an object per chunk.
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chunkindex.arrays import ArraySpec, AssembledIndex, coordinate_array, list_column
from chunkindex.codecs import CodecChain, UnsupportedCodec
from chunkindex.recipe import Recipe
from chunkindex.stores import gdal_path

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
                   "cell_methods", "cartesian_axis")
# HDF5 filter ids
H5Z_DEFLATE, H5Z_SHUFFLE, H5Z_FLETCHER32, H5Z_SZIP, H5Z_NBIT, H5Z_SCALEOFFSET = 1, 2, 3, 4, 5, 6
H5Z_BLOSC, H5Z_LZ4, H5Z_BITSHUFFLE, H5Z_ZSTD = 32001, 32004, 32008, 32015
FILTER_NAMES = {H5Z_DEFLATE: "deflate", H5Z_SHUFFLE: "shuffle", H5Z_FLETCHER32: "fletcher32", H5Z_SZIP: "szip",
                H5Z_NBIT: "nbit", H5Z_SCALEOFFSET: "scaleoffset", H5Z_BLOSC: "blosc", H5Z_LZ4: "lz4",
                H5Z_BITSHUFFLE: "bitshuffle", H5Z_ZSTD: "zstd", 307: "bzip2", 32013: "zfp", 32017: "sz"}


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
        code, flags, values, name = plist.get_filter(i)
        out.append({"code": int(code), "name": FILTER_NAMES.get(int(code), name.decode(errors="replace")),
                    "values": [int(v) for v in values]})
    return out


def hdf5_chain(filters: list[dict[str, Any]], dtype: np.dtype, where: str) -> CodecChain:
    """The Zarr v2 chain of an HDF5 filter pipeline (applied in order on write)."""
    zarr_filters: list[dict[str, Any]] = []
    compressor: dict[str, Any] | None = None
    notes = []
    for f in filters:
        code = f["code"]
        if compressor is not None:
            raise UnsupportedCodec(f"{where}: HDF5 filter {f['name']} after compressor {compressor['id']} "
                                   "cannot be expressed as a Zarr v2 chain")
        if code == H5Z_SHUFFLE:
            zarr_filters.append({"id": "shuffle", "elementsize": int(dtype.itemsize)})
        elif code == H5Z_DEFLATE:
            compressor = {"id": "zlib", "level": int(f["values"][0]) if f["values"] else 1}
        elif code == H5Z_ZSTD:
            compressor = {"id": "zstd", "level": int(f["values"][0]) if f["values"] else 1}
        elif code == H5Z_BLOSC:
            compressor = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
        elif code == H5Z_LZ4:
            compressor = {"id": "imagecodecs_lz4h5"}
            notes.append("HDF5 LZ4 filter framing: decodable by imagecodecs, not by GDAL")
        elif code == H5Z_FLETCHER32:
            zarr_filters.append({"id": "fletcher32"})
            notes.append("Fletcher32 checksums: checked and stripped by numcodecs, not by GDAL")
        else:
            raise UnsupportedCodec(f"{where}: the HDF5 {f['name']} filter (id {code}) cannot be decoded "
                                   "through references by GDAL or zarr-python")
    # Fletcher32 is the last filter on write, so it is undone first: it acts on
    # the compressed bytes, which Zarr v2 cannot express after a compressor.
    if any(z["id"] == "fletcher32" for z in zarr_filters) and compressor is not None:
        raise UnsupportedCodec(f"{where}: Fletcher32 after compression cannot be expressed as a Zarr v2 chain")
    description = "HDF5 " + (" + ".join(f["name"] for f in filters) or "uncompressed")
    return CodecChain(compressor, tuple(zarr_filters), description, True, tuple(notes))


class ObjectFile(io.RawIOBase):
    """A read-only, seekable file over an obstore object, for h5py.

    obstore's reader returns its own Bytes type; h5py wants `readinto`."""

    def __init__(self, store: Any, path: str, buffer_size: int = 1 << 20) -> None:
        import obstore

        self._reader = obstore.open_reader(store, path, buffer_size=buffer_size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._reader.seek(offset, whence)

    def tell(self) -> int:
        return self._reader.tell()

    def readinto(self, buffer: Any) -> int:
        data = memoryview(self._reader.read(len(buffer)))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._reader.close()
        super().close()


def open_h5(store: Any, path: str, url: str) -> Any:
    """h5py.File of a local path, or of an object in `store` (S3, HTTP)."""
    import h5py

    if url.startswith("/"):
        return h5py.File(url, "r")
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
    grid = tuple(math.ceil(s / c) for s, c in zip(shape, dataset.chunks))
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
              extractor: str = "hdf5") -> list[dict[str, Any]]:
    """One row per recipe variable of one NetCDF4/HDF5 file."""
    import time

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
                    grid = int(np.prod([math.ceil(s / c) for s, c in zip(dataset.shape, dataset.chunks)]))
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
            if concat in dims and concat in h5:
                concat_values = [float(v) for v in np.asarray(h5[concat][:], dtype=np.float64)]
            coords = {}
            for dim in dims:
                if dim != concat and dim in h5 and h5[dim].ndim == 1:
                    coords[dim] = {"values": np.asarray(h5[dim][:], dtype=np.float64).tolist(),
                                   "attrs": _attributes(h5[dim])}
            if concat in dims and concat in h5:
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


class HdfExtractor:
    """HeaderExtractor for NetCDF4/HDF5 (h5py chunk walk or GDAL GetRawBlockInfo)."""

    def read_batch(self, recipe: Recipe, spec: Any, batch: pa.Table, progress: Any = None) -> pa.Table:
        from chunkindex.stores import open_store

        store = open_store(spec)
        rows: list[dict[str, Any]] = []
        paths, urls, ids = batch["path"].to_pylist(), batch["url"].to_pylist(), batch["file_id"].to_pylist()
        for done, (path, url, file_id) in enumerate(zip(paths, urls, ids), start=1):
            rows.extend(read_file(store, path, url, file_id, recipe, recipe.headers.extractor))
            if progress is not None:
                progress(done, len(paths))
        return variables_table(rows)

    def assemble(self, recipe: Recipe, manifest: pa.Table, headers: pa.Table) -> Any:
        return assemble_hdf(recipe, manifest, headers)

    def source(self, recipe: Recipe) -> Any:
        from chunkindex.validate import HdfSource

        return HdfSource(recipe)


def assemble_hdf(recipe: Recipe, manifest: pa.Table, headers: pa.Table) -> Any:
    """Concatenate each variable's files along the concat dimension, in
    coordinate order whatever the listing order; report gaps, refuse overlaps."""
    result = AssembledIndex(arrays=[])
    urls = dict(zip(manifest["file_id"].to_pylist(), manifest["url"].to_pylist()))
    concat = recipe.concat.dim
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
        # Order files by their first concat value.
        order = sorted(range(len(meta)), key=lambda i: (meta[i]["concat_values"] or [float(i)])[0])
        first = meta[order[0]]
        dims = first["dims"]
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
        chunks = first["chunks"]
        step = chunks[axis]
        lengths = [meta[i]["shape"][axis] for i in order]
        for i, length in zip(order[:-1], lengths[:-1]):
            if length % step:
                raise HdfLayoutError(f"{urls[meta[i]['file_id']]}:{variable.name}: {concat} length {length} is not "
                                     f"a multiple of its chunk size {step}, so the files' chunks cannot line up")
        values = [v for i in order for v in meta[i]["concat_values"]]
        if values:
            diffs = np.diff(values)
            if (diffs <= 0).any():
                bad = int(np.argmax(diffs <= 0))
                raise HdfLayoutError(f"recipe {recipe.id}: {concat} overlaps or goes back in time at "
                                     f"value {values[bad + 1]} (after {values[bad]})")
            typical = float(np.median(diffs)) if diffs.size else 0.0
            for k in np.flatnonzero(diffs > 1.5 * typical) if typical else []:
                result.notes.append(f"{variable.name}: gap in {concat} between {values[k]} and {values[k + 1]}")
        shape = list(first["shape"])
        shape[axis] = int(sum(lengths))
        grid = [math.ceil(s / c) for s, c in zip(shape, chunks)]
        n_chunks = int(np.prod(grid, dtype=np.int64))
        url_index = np.full(n_chunks, -1, np.int32)
        offsets = np.zeros(n_chunks, np.int64)
        sizes = np.zeros(n_chunks, np.int64)
        url_list = []
        start = 0
        position = {fid: k for k, fid in enumerate(rows["file_id"].to_pylist())}
        for slot, i in enumerate(order):
            row = position[meta[i]["file_id"]]
            local_shape = meta[i]["shape"]
            local_grid = [math.ceil(s / c) for s, c in zip(local_shape, chunks)]
            numbers = rows["chunk_number"][row].values.to_numpy()
            index = list(np.unravel_index(numbers, local_grid))
            index[axis] = index[axis] + start // step
            global_numbers = np.ravel_multi_index(tuple(index), grid)
            url_index[global_numbers] = slot
            offsets[global_numbers] = rows["offsets"][row].values.to_numpy()
            sizes[global_numbers] = rows["sizes"][row].values.to_numpy()
            url_list.append(urls[meta[i]["file_id"]])
            start += local_shape[axis]
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
        array = ArraySpec(name=variable.name, dims=tuple(dims), shape=tuple(shape), chunks=tuple(chunks),
                          dtype=dtype.str, fill_value=fill if fill is not None else 0, chain=chain, attrs=attrs,
                          urls=url_list, url_index=url_index, offsets=offsets, sizes=sizes)
        if inline:  # compact: the whole array inline, uncompressed
            array.chain = CodecChain(None, (), "HDF5 compact (inline)")
            array.attrs["chunkindex"]["codec"] = array.chain.as_attribute()
            array.attrs["chunkindex"]["inline_source"] = url_list[0]
            array.inline = inline[0]
        result.add_data_array(array, recipe.output.gdal_readable_variant)
        # Coordinates: the concat one from every file, the others from the first file (must agree).
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
    result.arrays.extend(coordinate_arrays.values())
    return result
