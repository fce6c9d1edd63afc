"""Converters between chunk-reference indexes: "real and virtual chunks are
the same table".

- Kerchunk Parquet or JSON (ours or third-party) -> CRI Parquet;
- CRI Parquet -> Kerchunk Parquet (or JSON);
- an existing Zarr v2 / v3 store (v3 sharded: inner chunks from each shard's
  index) -> CRI Parquet, every chunk object a row with its byte range.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from chunkindex.codecs import CodecChain
from chunkindex.indexes.flat import CriError, open_index, write_cri_parquet
from chunkindex.model import ArraySpec, AssembledIndex, coordinate_array, level_group

RawChunks = dict[str, tuple[np.ndarray, list[bytes]]]


# ---------------------------------------------------------------------------
# Kerchunk -> CRI


def _kerchunk_refs(index: Path) -> tuple[dict[str, Any], dict[str, Any] | None, int | None]:
    """(consolidated metadata, JSON refs or None, record_size or None)."""
    if index.is_dir():
        zmeta = index / ".zmetadata"
        if not zmeta.is_file():
            raise CriError(f"{index} is not a Kerchunk Parquet index (no .zmetadata)")
        doc = json.loads(zmeta.read_text())
        if "metadata" not in doc or "record_size" not in doc:
            raise CriError(f"{index}/.zmetadata is not Kerchunk Parquet metadata (needs 'metadata', 'record_size')")
        meta = {k: (json.loads(v) if isinstance(v, str) else v) for k, v in doc["metadata"].items()}
        return meta, None, int(doc["record_size"])
    if not index.is_file():
        raise FileNotFoundError(f"{index} does not exist")
    try:
        doc = json.loads(index.read_text())
    except json.JSONDecodeError as exc:
        raise CriError(f"{index} is not a Kerchunk JSON index: {exc}") from None
    if "gen" in doc:
        raise CriError(f"{index}: Kerchunk 'gen' (generated key) references are not supported")
    refs = dict(doc.get("refs", doc))
    templates = doc.get("templates", {})
    if templates:
        for key, value in refs.items():
            if isinstance(value, list) and value and isinstance(value[0], str) and "{{" in value[0]:
                refs[key] = [re.sub(r"{{\s*(\w+)\s*}}", lambda m: templates[m.group(1)], value[0]), *value[1:]]
    meta = {k: (json.loads(v) if isinstance(v, str) else v) for k, v in refs.items()
            if k.rsplit("/", 1)[-1] in (".zarray", ".zattrs", ".zgroup")}
    return meta, refs, None


def _raw_value(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if value.startswith("base64:"):
        return base64.b64decode(value[7:])
    return value.encode()


def _array_refs(index: Path, name: str, zarray: dict[str, Any], refs: dict[str, Any] | None,
                record_size: int | None) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, dict[int, bytes]]:
    """(urls, url_index, offsets, sizes, raw chunks by number) of one array."""
    grid = [math.ceil(s / c) if c else 0 for s, c in zip(zarray["shape"], zarray["chunks"])]
    n = int(np.prod(grid, dtype=np.int64)) if grid else 1
    url_index = np.full(n, -1, np.int32)
    offsets = np.zeros(n, np.int64)
    sizes = np.zeros(n, np.int64)
    raw: dict[int, bytes] = {}
    if refs is None:  # Kerchunk Parquet: row r of refs.k.parq is chunk k * record_size + r
        parts = sorted((index / name).glob("refs.*.parq"), key=lambda p: int(p.name.split(".")[1]))
        dictionary: dict[str, int] = {}
        for part in parts:
            k = int(part.name.split(".")[1])
            table = pq.read_table(part)
            start = k * record_size
            stop = min(n, start + table.num_rows)
            table = table.slice(0, stop - start)
            path = table["path"].combine_chunks()
            if isinstance(path, pa.DictionaryArray):
                path = path.dictionary_decode()
            valid = path.is_valid().to_numpy(zero_copy_only=False)
            rows = np.flatnonzero(valid)
            if rows.size:
                encoded = pa.compute.dictionary_encode(path.filter(pa.array(valid)))
                ids = np.array([dictionary.setdefault(u, len(dictionary)) for u in encoded.dictionary.to_pylist()],
                               np.int32)
                url_index[start + rows] = ids[encoded.indices.to_numpy()]
                offsets[start + rows] = table["offset"].to_numpy()[rows]
                sizes[start + rows] = table["size"].to_numpy()[rows]
            if "raw" in table.column_names and table["raw"].null_count < table.num_rows:
                raws = table["raw"].to_pylist()
                for row in np.flatnonzero(~valid):
                    if raws[row] is not None:
                        raw[start + int(row)] = raws[row]
        return list(dictionary), url_index, offsets, sizes, raw
    separator = zarray.get("dimension_separator", ".")
    prefix = f"{name}/" if name else ""
    dictionary = {}
    for key, value in refs.items():
        if not key.startswith(prefix) or key.rsplit("/", 1)[-1].startswith(".z"):
            continue
        chunk_key = key[len(prefix):]
        if "/" in chunk_key and separator != "/":
            continue  # belongs to a nested array
        try:
            index_tuple = tuple(int(p) for p in chunk_key.split(separator)) if grid else ()
        except ValueError:
            continue
        if len(index_tuple) != len(grid):
            continue
        number = int(np.ravel_multi_index(index_tuple, grid)) if grid else 0
        if isinstance(value, list):
            url = value[0]
            if len(value) == 1:
                target = Path(url.removeprefix("file://"))
                if not target.is_file():
                    raise CriError(f"{index}: {key} references the whole object {url}, whose size is unknown")
                offset, size = 0, target.stat().st_size
            else:
                offset, size = int(value[1]), int(value[2])
            url_index[number] = dictionary.setdefault(url, len(dictionary))
            offsets[number], sizes[number] = offset, size
        else:
            raw[number] = _raw_value(value)
    return list(dictionary), url_index, offsets, sizes, raw


def _decode_raw(chain: CodecChain, data: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray | None:
    from chunkindex.codecs import decode_chunk

    try:
        return decode_chunk(chain, data, dtype, shape)
    except Exception:  # noqa: BLE001 - undecodable here: kept inline as it is
        return None


def kerchunk_arrays(index: str | Path) -> tuple[AssembledIndex, RawChunks, dict[str, Any]]:
    """The arrays of a Kerchunk Parquet folder or JSON file, for the CRI writer.

    Returns (assembled arrays, inline chunks per array, root attributes).
    Inline chunks that decode to nothing but the fill value (the encoded fill
    chunks Kerchunk Parquet needs for positional rows) are dropped: in CRI a
    chunk without a row reads as the fill value. 1-D inline coordinates become
    the dimensions' values.
    """
    index = Path(index)
    meta, refs, record_size = _kerchunk_refs(index)
    names = sorted(k[: -len("/.zarray")] if k != ".zarray" else "" for k in meta if k.endswith(".zarray"))
    if not names:
        raise CriError(f"{index} holds no arrays (.zarray)")
    arrays: list[ArraySpec] = []
    raw_chunks: RawChunks = {}
    for name in names:
        zarray = meta[f"{name}/.zarray" if name else ".zarray"]
        attrs = dict(meta.get(f"{name}/.zattrs" if name else ".zattrs", {}))
        if zarray.get("zarr_format", 2) != 2:
            raise CriError(f"{index}: {name} is not a Zarr v2 array")
        if zarray.get("order", "C") != "C":
            raise CriError(f"{index}: {name} is stored in Fortran order, which CRI does not describe")
        dims = tuple(attrs.pop("_ARRAY_DIMENSIONS", [f"{name or 'data'}_dim{j}" for j in range(len(zarray["shape"]))]))
        chain = CodecChain(zarray.get("compressor"), tuple(zarray.get("filters") or ()), "kerchunk")
        shape, chunks = tuple(zarray["shape"]), tuple(zarray["chunks"])
        fill = zarray.get("fill_value")
        if isinstance(fill, str):
            fill = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}.get(fill, fill)
        urls, url_index, offsets, sizes, raw = _array_refs(index, name, zarray, refs, record_size)
        # Fill chunks stand for "no data": drop them (decoded once per distinct value).
        verdict: dict[bytes, bool] = {}
        for number, value in list(raw.items()):
            if value not in verdict:
                decoded = _decode_raw(chain, value, zarray["dtype"], chunks)
                fill_value = fill if fill is not None else 0
                verdict[value] = decoded is not None and bool(
                    np.all(decoded == fill_value) or (isinstance(fill_value, float) and np.isnan(fill_value)
                                                      and np.all(np.isnan(decoded))))
            if verdict[value]:
                del raw[number]
        array = ArraySpec(name=name or "data", dims=dims, shape=shape, chunks=chunks, dtype=zarray["dtype"],
                          fill_value=fill, chain=chain, attrs=attrs, urls=urls, url_index=url_index,
                          offsets=offsets, sizes=sizes)
        if len(dims) == 1 and dims[0] == array.name and len(raw) == array.n_chunks and not urls:
            # An inline coordinate: its values, as float64 (the CRI dimension values).
            values = np.concatenate([_decode_raw(chain, raw[k], zarray["dtype"], chunks).reshape(-1)
                                     for k in sorted(raw)])[: shape[0]]
            arrays.append(coordinate_array(array.name, values.astype(np.float64), attrs))
            continue
        if raw:
            numbers = np.array(sorted(raw), np.int64)
            raw_chunks[array.name] = (numbers, [raw[int(k)] for k in numbers])
        arrays.append(array)
    return AssembledIndex(arrays=arrays), raw_chunks, dict(meta.get(".zattrs", {}))


def kerchunk_to_cri(index: str | Path, target: str | Path, relative_paths: bool = True) -> Path:
    """Convert a Kerchunk Parquet folder or JSON file to a CRI Parquet file."""
    assembled, raw, root_attrs = kerchunk_arrays(index)
    return write_cri_parquet(assembled, target, root_attrs=root_attrs or None, relative_paths=relative_paths,
                             raw=raw)


# ---------------------------------------------------------------------------
# CRI -> Kerchunk


def zarr_chain(steps: list[dict[str, Any]], dtype: str, chunk_shape: list[int]) -> CodecChain:
    """A Zarr v2 compressor + filters equivalent to a CRI decode chain."""
    compressors = {"deflate", "gzip", "zstd", "lzma", "lz4", "blosc", "lzw", "packbits", "webp", "png",
                   "jpegxl", "jpeg2000", "jpeg"}

    def config(step: dict[str, Any]) -> dict[str, Any]:
        name = step["name"]
        if name == "deflate":
            return {"id": "zlib", "level": step.get("level", 1)}
        if name == "gzip":
            return {"id": "gzip", "level": step.get("level", 1)}
        if name == "zstd":
            return {"id": "zstd", "level": step.get("level", 1)}
        if name == "lzma":
            return {"id": "lzma", "format": 1, "check": -1, "preset": None, "filters": None}
        if name == "lz4":
            return {"id": "lz4"} if step.get("framing", "numcodecs") == "numcodecs" else {"id": "imagecodecs_lz4h5"}
        if name == "blosc":
            return {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
        if name in ("lzw", "packbits", "webp", "png", "jpegxl", "lerc"):
            return {"id": f"imagecodecs_{name}"}
        if name == "jpeg2000":
            return {"id": "imagecodecs_jpeg2k"}
        if name == "jpeg":
            out: dict[str, Any] = {"id": "imagecodecs_jpeg"}
            if step.get("tables"):
                out["tables"] = step["tables"]
            if step.get("colorspace") == "YCbCr":
                out.update(colorspace_jpeg="YCBCR", colorspace_data="RGB")
            return out
        if name == "shuffle":
            return {"id": "shuffle", "elementsize": int(step["element_size"])}
        if name == "fletcher32":
            return {"id": "fletcher32"}
        if name == "tiff_predictor":
            return {"id": "imagecodecs_delta" if step["predictor"] == 2 else "imagecodecs_floatpred",
                    "shape": list(chunk_shape), "dtype": dtype, "axis": -2 if step.get("samples", 1) > 1 else -1,
                    "dist": 1}
        raise CriError(f"decode step {name!r} has no Zarr v2 codec")

    compressor = None
    rest = list(steps)
    if rest and rest[0]["name"] in compressors:
        compressor = config(rest.pop(0))
    return CodecChain(compressor, tuple(config(s) for s in reversed(rest)), "from CRI")


def cri_arrays(index: str | Path) -> tuple[list[ArraySpec], RawChunks]:
    """Zarr v2 arrays of a CRI index in the layout the workflow's Kerchunk
    writer gives: overview level f as `ovr<f>/<var>` over the dimensions
    `<y>_ovr<f>`/`<x>_ovr<f>`, whose coordinates live in that sub-group;
    dimensions with values or a geotransform become inline coordinates."""
    cri = open_index(index)
    arrays: list[ArraySpec] = []
    raw_chunks: RawChunks = {}
    coords: dict[str, np.ndarray] = {}
    for name, array in cri.arrays.items():
        entry = cri.document["arrays"][name]
        for level, meta in sorted(array.levels.items()):
            shape, chunks = tuple(meta["shape"]), tuple(meta["chunk_shape"])
            factor = round(array.shape[-1 if array.band_dim != array.dims[-1] else -2] /
                           shape[-1 if array.band_dim != array.dims[-1] else -2]) if level else 1
            suffix = f"_ovr{factor}" if level else ""
            spatial = {d for d in array.dims if cri.dimensions.get(d, {}).get("type") in ("HORIZONTAL_X", "HORIZONTAL_Y")}
            dims = tuple(d + suffix if d in spatial else d for d in array.dims)
            table = cri.rows(name, level)
            grid = [math.ceil(s / c) for s, c in zip(shape, chunks)]
            n = int(np.prod(grid, dtype=np.int64))
            numbers = np.ravel_multi_index(tuple(table[f"c{j}"].to_numpy() for j in range(len(shape))), grid) \
                if table.num_rows else np.zeros(0, np.int64)
            path = table["path"].combine_chunks() if table.num_rows else pa.array([], pa.string())
            if isinstance(path, pa.DictionaryArray):
                path = path.dictionary_decode()
            valid = path.is_valid().to_numpy(zero_copy_only=False)
            encoded = pa.compute.dictionary_encode(path.filter(pa.array(valid))) if valid.any() else None
            url_index = np.full(n, -1, np.int32)
            offsets = np.zeros(n, np.int64)
            sizes = np.zeros(n, np.int64)
            urls: list[str] = []
            if encoded is not None:
                urls = [cri.resolve(p) for p in encoded.dictionary.to_pylist()]
                url_index[numbers[valid]] = encoded.indices.to_numpy()
                offsets[numbers[valid]] = table["offset"].to_numpy()[valid]
                sizes[numbers[valid]] = table["length"].to_numpy()[valid]
            attrs = dict(entry.get("attrs", {}))
            group = level_group(suffix)
            spec = ArraySpec(name=group + name, dims=dims, shape=shape, chunks=chunks, dtype=entry["dtype"],
                             # A null fill value (no nodata) stays null (the reader's 0 is for decoding).
                             fill_value=None if entry.get("fill_value", 0) is None else array.fill_value,
                             chain=zarr_chain(meta["codec"], entry["dtype"], list(chunks)),
                             attrs=attrs, urls=urls, url_index=url_index, offsets=offsets, sizes=sizes)
            if (~valid).any():
                raws = table["raw"].to_pylist()
                inline_rows = np.flatnonzero(~valid)
                if n == 1:
                    spec.inline = raws[int(inline_rows[0])]
                else:
                    order = np.argsort(numbers[inline_rows])
                    raw_chunks[spec.name] = (numbers[inline_rows][order],
                                             [raws[int(inline_rows[i])] for i in order])
            arrays.append(spec)
            for position, dim in enumerate(array.dims):
                info = cri.dimensions.get(dim, {})
                out_dim = dims[position]
                # An overview's own x/y coordinates live in its group (as the assembler writes them).
                key = (group if out_dim != dim else "") + out_dim
                if key in coords:
                    continue
                if "values" in info:
                    coords[key] = np.asarray(info["values"], np.float64)
                elif info.get("from_geotransform") and "geotransform" in meta:
                    gt = meta["geotransform"]
                    origin, step = (gt[0], gt[1]) if info.get("type") == "HORIZONTAL_X" else (gt[3], gt[5])
                    coords[key] = origin + (np.arange(shape[position]) + 0.5) * step
    for key, values in coords.items():
        base = re.sub(r"_ovr\d+$", "", key.rsplit("/", 1)[-1])
        info = cri.dimensions.get(base, {})
        attrs = {k: info[k] for k in ("units", "calendar", "positive", "standard_name", "long_name", "axis")
                 if k in info}
        arrays.append(dataclasses.replace(coordinate_array(key.rsplit("/", 1)[-1], values, attrs), name=key))
    return arrays, raw_chunks


def cri_to_kerchunk(index: str | Path, target: str | Path, record_size: int = 100_000) -> Path:
    """Convert a CRI Parquet file to Kerchunk Parquet (or JSON when
    `target` ends in .json). Inline chunks of multi-chunk arrays are written
    as `raw` rows."""
    from chunkindex.indexes.kerchunk import write_kerchunk_json, write_kerchunk_parquet

    arrays, raw = cri_arrays(index)
    cri = open_index(index)
    root_attrs = cri.document.get("attrs", {})
    for array in arrays:
        array.fill_missing()
    if raw:
        names = ", ".join(raw)
        raise CriError(f"{index}: arrays {names} hold inline chunks among referenced ones, which the Kerchunk "
                       "writers here do not write")
    if str(target).endswith(".json"):
        return write_kerchunk_json(arrays, target, root_attrs)
    return write_kerchunk_parquet(arrays, target, record_size, root_attrs)


# ---------------------------------------------------------------------------
# Existing Zarr stores -> CRI

_V3_DTYPES = {"bool": "|b1", "int8": "|i1", "uint8": "|u1", "int16": "<i2", "uint16": "<u2", "int32": "<i4",
              "uint32": "<u4", "int64": "<i8", "uint64": "<u8", "float16": "<f2", "float32": "<f4",
              "float64": "<f8", "complex64": "<c8", "complex128": "<c16"}


def _v3_chain(codecs: list[dict[str, Any]], dtype: str, where: str) -> tuple[CodecChain, str]:
    """(Zarr v2-style chain, dtype with byte order) of v3 array->bytes->bytes codecs."""
    compressor: dict[str, Any] | None = None
    filters: list[dict[str, Any]] = []
    for codec in codecs:
        name, config = codec["name"], codec.get("configuration", {})
        if name == "bytes":
            if np.dtype(dtype).itemsize > 1:
                dtype = (">" if config.get("endian", "little") == "big" else "<") + dtype[1:]
        elif name == "transpose":
            order = list(config.get("order", []))
            if order != sorted(order):
                raise CriError(f"{where}: the Zarr v3 transpose codec has no CRI decode step")
        elif name in ("zstd", "numcodecs.zstd"):
            compressor = {"id": "zstd", "level": config.get("level", 0)}
        elif name in ("gzip", "numcodecs.gzip"):
            compressor = {"id": "gzip", "level": config.get("level", 1)}
        elif name in ("numcodecs.zlib",):
            compressor = {"id": "zlib", "level": config.get("level", 1)}
        elif name in ("blosc", "numcodecs.blosc"):
            compressor = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0}
        elif name == "numcodecs.lz4":
            compressor = {"id": "lz4"}
        elif name == "numcodecs.shuffle":
            filters.append({"id": "shuffle", "elementsize": int(config.get("elementsize", np.dtype(dtype).itemsize))})
        else:
            raise CriError(f"{where}: Zarr v3 codec {name!r} has no CRI decode step")
        if compressor is not None and name not in ("zstd", "numcodecs.zstd", "gzip", "numcodecs.gzip",
                                                   "numcodecs.zlib", "blosc", "numcodecs.blosc", "numcodecs.lz4"):
            raise CriError(f"{where}: codec {name!r} after a compressor has no CRI equivalent")
    return CodecChain(compressor, tuple(filters), "zarr v3"), dtype


def _shard_index(data: bytes, n_inner: int, index_codecs: list[dict[str, Any]], where: str) -> np.ndarray:
    """(n_inner, 2) offsets and lengths of a v3 shard's index (bytes + crc32c)."""
    size = n_inner * 16
    names = [c["name"] for c in index_codecs]
    if any(n not in ("bytes", "crc32c") for n in names):
        raise CriError(f"{where}: shard index codecs {names} are not supported")
    entries = np.frombuffer(data[:size], "<u8").reshape(n_inner, 2)
    return entries


def _chunk_key(index: tuple[int, ...], style: tuple[str, str]) -> str:
    """A chunk's object key: Zarr v2 style (`1.2.3`, `0` for a scalar) or v3 default (`c/1/2/3`)."""
    encoding, separator = style
    if encoding == "v2":
        return separator.join(map(str, index)) or "0"
    return "c" + "".join(separator + str(i) for i in index)


def zarr_store_arrays(url: str, store_options: dict[str, Any] | None = None) -> tuple[AssembledIndex, RawChunks]:
    """Every array of a Zarr v2 or v3 store as reference arrays: each chunk
    object is a chunk at offset 0 with its object size; v3 sharded arrays
    give one row per inner chunk from each shard's index."""
    import obstore

    from chunkindex.sources.stores import StoreSpec, open_store, resolve_local

    url = resolve_local(url, Path.cwd())
    if url.startswith("file://") and not Path(url[len("file://"):]).is_dir():
        raise FileNotFoundError(f"{url[len('file://'):]} is not a Zarr store (no such folder)")
    try:
        store = open_store(StoreSpec(url.rstrip("/") + "/", dict(store_options or {})))
        objects: dict[str, int] = {}
        for batch in obstore.list(store):
            for item in batch:
                objects[item["path"]] = int(item["size"])
    except Exception as exc:  # noqa: BLE001 - obstore raises its own error types
        raise CriError(f"{url}: cannot list the Zarr store: {str(exc).splitlines()[0]}") from None
    if not objects:
        raise CriError(f"{url} is empty or not a folder")

    def read(key: str) -> bytes:
        return bytes(obstore.get(store, key).bytes())

    public = url.removeprefix("file://")
    public = public.rstrip("/") + "/"
    arrays: list[ArraySpec] = []
    metas = sorted(k for k in objects if k.rsplit("/", 1)[-1] in (".zarray", "zarr.json"))
    for key in metas:
        meta = json.loads(read(key))
        folder = key.rsplit("/", 1)[0] if "/" in key else ""
        name = folder or "data"
        prefix = folder + "/" if folder else ""
        if key.endswith(".zarray"):
            attrs = json.loads(read(prefix + ".zattrs")) if prefix + ".zattrs" in objects else {}
            dims = tuple(attrs.pop("_ARRAY_DIMENSIONS", [f"{name}_dim{j}" for j in range(len(meta["shape"]))]))
            if meta.get("order", "C") != "C":
                raise CriError(f"{url}{key}: Fortran order is not described by CRI")
            chain = CodecChain(meta.get("compressor"), tuple(meta.get("filters") or ()), "zarr v2")
            dtype, shape, chunks = meta["dtype"], tuple(meta["shape"]), tuple(meta["chunks"])
            separator = meta.get("dimension_separator", ".")
            fill = meta.get("fill_value")
            key_style = ("v2", separator)
            shard = None
        else:
            if meta.get("node_type") != "array":
                continue
            attrs = dict(meta.get("attributes", {}))
            shape = tuple(meta["shape"])
            dims = tuple(meta.get("dimension_names") or [f"{name}_dim{j}" for j in range(len(shape))])
            dtype = _V3_DTYPES.get(meta["data_type"])
            if dtype is None:
                raise CriError(f"{url}{key}: data type {meta['data_type']!r} is not supported")
            grid_chunks = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
            encoding = meta.get("chunk_key_encoding", {"name": "default"})
            separator = encoding.get("configuration", {}).get("separator", "/" if encoding["name"] == "default" else ".")
            v2_keys = encoding["name"] == "v2"
            key_style = ("v2" if v2_keys else "default", separator)
            codecs = meta["codecs"]
            fill = meta.get("fill_value")
            shard = None
            if codecs and codecs[0]["name"] == "sharding_indexed":
                config = codecs[0]["configuration"]
                chunks = tuple(config["chunk_shape"])
                chain, dtype = _v3_chain(config["codecs"], dtype, f"{url}{key}")
                shard = (grid_chunks, config.get("index_codecs", []), config.get("index_location", "end"))
            else:
                chunks = grid_chunks
                chain, dtype = _v3_chain(codecs, dtype, f"{url}{key}")
        grid = [math.ceil(s / c) for s, c in zip(shape, chunks)]
        n = int(np.prod(grid, dtype=np.int64))
        url_index = np.full(n, -1, np.int32)
        offsets = np.zeros(n, np.int64)
        sizes = np.zeros(n, np.int64)
        urls: list[str] = []
        if shard is None:
            for index in np.ndindex(*grid):
                object_key = prefix + _chunk_key(index, key_style)
                if object_key in objects:
                    number = int(np.ravel_multi_index(index, grid)) if grid else 0
                    url_index[number] = len(urls)
                    urls.append(public + object_key)
                    sizes[number] = objects[object_key]
        else:
            outer, index_codecs, location = shard
            per_shard = [o // c for o, c in zip(outer, chunks)]
            n_inner = int(np.prod(per_shard))
            index_bytes = n_inner * 16 + (4 if any(c["name"] == "crc32c" for c in index_codecs) else 0)
            shard_grid = [math.ceil(s / o) for s, o in zip(shape, outer)]
            local = np.array(list(np.ndindex(*per_shard)), np.int64).reshape(n_inner, len(shape))
            for shard_index in np.ndindex(*shard_grid):
                object_key = prefix + _chunk_key(shard_index, key_style)
                if object_key not in objects:
                    continue
                size = objects[object_key]
                start = size - index_bytes if location == "end" else 0
                entries = _shard_index(bytes(obstore.get_range(store, object_key, start=start, length=index_bytes)),
                                       n_inner, index_codecs, f"{url}{object_key}")
                present = entries[:, 0] != np.iinfo(np.uint64).max
                coords = local[present] + np.array(shard_index) * np.array(per_shard)
                inside = (coords < np.array(grid)).all(axis=1)
                numbers = np.ravel_multi_index(tuple(coords[inside].T), grid)
                url_index[numbers] = len(urls)
                offsets[numbers] = entries[present][inside, 0].astype(np.int64)
                sizes[numbers] = entries[present][inside, 1].astype(np.int64)
                urls.append(public + object_key)
        arrays.append(ArraySpec(name=name, dims=dims, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill,
                                chain=chain, attrs=attrs, urls=urls, url_index=url_index, offsets=offsets,
                                sizes=sizes))
    if not arrays:
        raise CriError(f"{url} holds no Zarr array (.zarray or zarr.json)")
    return AssembledIndex(arrays=arrays), {}


def zarr_to_cri(url: str, target: str | Path, store_options: dict[str, Any] | None = None) -> Path:
    """Index an existing Zarr v2/v3 store into a CRI Parquet file."""
    assembled, raw = zarr_store_arrays(url, store_options)
    return write_cri_parquet(assembled, target, raw=raw)
