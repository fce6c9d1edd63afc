"""The CRI flat chunk-reference index (docs/spec/cri-parquet.md).

One row per stored chunk — `variable`, `level`, integer chunk coordinates
`c0…`, `path`, `offset`, `length`, `raw` — and one JSON document (`cri`)
describing arrays, levels, decode chains, dimensions, CRS and files. Written
as Parquet (the interchange form), GeoPackage or DuckDB from the same
assembled arrays as the Kerchunk writer; read back by `open_index`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from chunkindex.atomic import atomic_path
from chunkindex.codecs import CodecChain
from chunkindex.indexes import parquet_splice
from chunkindex.model import COMPLEX_INT, ArraySpec, AssembledIndex, json_fill_value, storage_dtype

CRI_VERSION = "0.1"
CRI_KEY = b"cri"
SUPPORTED_MAJOR = 0
# Rows per row group (aligned down to whole steps of the outermost dimension):
# a GHRSST day (2,556 rows) falls in one group, and 30 M rows make ~230
# groups, whose statistics stay a small footer.
ROW_GROUP_ROWS = 131_072
# Row groups per buffer encoded by one thread (the write is spliced from them).
GROUPS_PER_BUFFER = 8
# An overview level's array (`ovr<f>/<var>`, or `<var>_ovr<f>` in indexes
# written before levels moved to sub-groups) or coordinate (`lat_ovr<f>`).
_OVERVIEW = re.compile(r"^(?:ovr\d+/)?(?P<base>.+?)(?:_ovr(?P<factor>\d+))?$")


class CriError(ValueError):
    """An index that does not follow the CRI spec, or a request it cannot answer."""


# ---------------------------------------------------------------------------
# Decode chains: Zarr v2 compressor + filters -> spec §3.1 steps


def _jpeg_step(config: dict[str, Any], notes: Sequence[str]) -> dict[str, Any]:
    step: dict[str, Any] = {"name": "jpeg"}
    tables = config.get("tables")
    if tables is None:  # older writers put the tables in a note only
        for note in notes:
            if note.startswith("JPEGTables (base64): "):
                tables = note.split(": ", 1)[1]
    if isinstance(tables, bytes | bytearray):
        tables = base64.b64encode(tables).decode()
    if tables:
        step["tables"] = tables
    names = {0: None, 1: "GRAY", 2: "RGB", 3: "YCbCr", 4: "CMYK", "GRAYSCALE": "GRAY", "YCBCR": "YCbCr",
             "RGB": "RGB", "CMYK": "CMYK", "GRAY": "GRAY", "MINISBLACK": "GRAY"}
    jpeg_space = config.get("colorspace_jpeg")
    if isinstance(jpeg_space, str):
        jpeg_space = jpeg_space.upper()
    colorspace = names.get(jpeg_space) if jpeg_space is not None else None
    if colorspace is None and any("YCbCr" in note for note in notes):
        colorspace = "YCbCr"
    if colorspace:
        step["colorspace"] = colorspace
    step["bits"] = int(config.get("bitspersample") or 8)
    return step


def _samples_of(config: dict[str, Any]) -> int:
    """Samples interleaved in a predictor row: the axes after the differenced one."""
    shape, axis = config["shape"], config.get("axis", -1)
    axis = axis % len(shape)
    return int(np.prod(shape[axis + 1:], dtype=np.int64)) if axis + 1 < len(shape) else 1


def codec_steps(chain: CodecChain, where: str = "") -> list[dict[str, Any]]:
    """The spec's decode chain (first step first) of a Zarr v2 `chain`.

    Raises:
        CriError: for a codec the spec has no step for (never written silently).
    """
    steps: list[dict[str, Any]] = []
    configs = ([chain.compressor] if chain.compressor is not None else []) + list(reversed(chain.filters))
    for config in configs:
        cid = config["id"]
        simple = {"zlib": "deflate", "gzip": "gzip", "zstd": "zstd", "lzma": "lzma", "blosc": "blosc",
                  "imagecodecs_lzw": "lzw", "imagecodecs_packbits": "packbits", "imagecodecs_webp": "webp",
                  "imagecodecs_png": "png", "imagecodecs_jpegxl": "jpegxl", "imagecodecs_jpeg2k": "jpeg2000",
                  "fletcher32": "fletcher32", "imagecodecs_zlib": "deflate", "imagecodecs_zstd": "zstd"}
        if cid in simple:
            step = {"name": simple[cid]}
            if cid in ("zlib", "gzip", "zstd") and config.get("level") is not None:
                step["level"] = int(config["level"])  # informative: decoders need no level
            steps.append(step)
        elif cid == "lz4":
            steps.append({"name": "lz4", "framing": "numcodecs"})
        elif cid == "imagecodecs_lz4h5":
            steps.append({"name": "lz4", "framing": "hdf5"})
        elif cid == "imagecodecs_lerc":
            steps.append({"name": "lerc"})
        elif cid == "imagecodecs_packints":
            bits = int(config.get("bitspersample", 0))
            if bits not in (1, 2, 4) or config.get("bitorder") not in (None, "msb"):
                raise CriError(f"{where}: packed samples of {bits} bits ({config}) have no CRI decode step")
            steps.append({"name": "unpack_bits", "bits": bits})
        elif cid in ("imagecodecs_jpeg", "imagecodecs_jpeg8"):
            steps.append(_jpeg_step(config, chain.notes))
        elif cid == "shuffle":
            steps.append({"name": "shuffle", "element_size": int(config.get("elementsize", 4))})
        elif cid in ("imagecodecs_delta", "imagecodecs_floatpred"):
            if config.get("dist", 1) != 1:
                raise CriError(f"{where}: {cid} with dist {config['dist']} has no TIFF predictor equivalent")
            steps.append({"name": "tiff_predictor", "predictor": 2 if cid == "imagecodecs_delta" else 3,
                          "samples": _samples_of(config)})
        else:
            raise CriError(f"{where}: codec {cid!r} ({chain.description}) has no CRI decode step")
    return steps


# ---------------------------------------------------------------------------
# Writer


def _regular(values: np.ndarray) -> float | None:
    """The step of evenly spaced values, or None."""
    if values.size < 2:
        return None
    step = (values[-1] - values[0]) / (values.size - 1)
    if step == 0 or not np.allclose(np.diff(values), step, rtol=1e-6, atol=0):
        return None
    return float(step)


def _clean(value: float) -> float:
    # Recovered from pixel centres: drop the last-digit noise (-179.99999999999997).
    return float(f"{value:.15g}")


def _dimension_kind(name: str, attrs: dict[str, Any]) -> str | None:
    axis = str(attrs.get("axis", "")).upper()
    standard = str(attrs.get("standard_name", ""))
    base = _OVERVIEW.sub(r"\g<base>", name).lower()
    units = str(attrs.get("units", "")).lower().replace("_", "").replace(" ", "")
    if units in ("degreesnorth", "degreenorth", "degreesn", "degreen"):
        return "HORIZONTAL_Y"  # CF: latitude by its units
    if units in ("degreeseast", "degreeeast", "degreese", "degreee"):
        return "HORIZONTAL_X"
    if axis == "T" or standard == "time" or base in ("time", "t"):
        return "TEMPORAL"
    if axis == "X" or standard in ("longitude", "projection_x_coordinate") or base in ("x", "lon", "longitude"):
        return "HORIZONTAL_X"
    if axis == "Y" or standard in ("latitude", "projection_y_coordinate") or base in ("y", "lat", "latitude"):
        return "HORIZONTAL_Y"
    if axis == "Z" or "positive" in attrs or standard in ("depth", "height", "altitude"):
        return "VERTICAL"
    return None


def _is_coordinate(array: ArraySpec) -> bool:
    # A level's coordinates live in its group (`ovr2/lat_ovr2`): the name's last part.
    return array.inline is not None and len(array.dims) == 1 and array.dims[0] == array.name.rsplit("/", 1)[-1]


def _crs_document(crs: str | None) -> dict[str, Any] | None:
    if not crs:
        return None
    doc: dict[str, Any] = {}
    match = re.search(r"EPSG(?::|/0/)(\d+)$", crs)
    if match:
        doc["epsg"] = int(match.group(1))
    try:
        from osgeo import osr
    except ImportError:
        return doc or {"wkt": crs}
    osr.UseExceptions()
    srs = osr.SpatialReference()
    srs.SetFromUserInput(f"EPSG:{doc['epsg']}" if "epsg" in doc else crs)
    doc["wkt"] = srs.ExportToWkt(["FORMAT=WKT2_2019"])
    doc["projjson"] = json.loads(srs.ExportToPROJJSON())
    if "epsg" not in doc and srs.GetAuthorityName(None) == "EPSG":
        doc["epsg"] = int(srs.GetAuthorityCode(None))
    return doc


def _common_base(urls: Iterable[str]) -> str:
    """The longest common folder (ending in '/') of `urls`, or ''."""
    urls = list(urls)
    if not urls:
        return ""
    prefix = os.path.commonprefix(urls)  # noqa: RUF071 - URLs (s3://...), cut at the last '/' below
    return prefix[:prefix.rfind("/") + 1]


@dataclass
class _Level:
    level: int
    array: ArraySpec


@dataclass
class _Variable:
    name: str
    levels: list[_Level] = field(default_factory=list)


def _group_levels(arrays: list[ArraySpec]) -> dict[str, _Variable]:
    """Data arrays by variable, overview arrays (`<var>_ovr<f>`) as levels 1..n
    in increasing factor; `_refs_only` variants are left out (the metadata
    carries the true chain)."""
    data = [a for a in arrays if not _is_coordinate(a)
            and "variant_of" not in a.attrs.get("chunkindex", {})]
    names = {a.name for a in data}
    variables: dict[str, _Variable] = {}
    overviews: dict[str, list[tuple[int, ArraySpec]]] = {}
    for array in data:
        factor = array.attrs.get("chunkindex", {}).get("overview_factor", 1)
        match = _OVERVIEW.match(array.name)
        if factor and factor > 1 and match and match.group("base") in names:
            overviews.setdefault(match.group("base"), []).append((int(factor), array))
        else:
            variables[array.name] = _Variable(array.name, [_Level(0, array)])
    for base, items in overviews.items():
        for number, (_, array) in enumerate(sorted(items, key=lambda item: item[0]), start=1):
            full = variables[base].levels[0].array
            if len(array.dims) != len(full.dims):
                raise CriError(f"overview {array.name} has dimensions {array.dims}, unlike {base}'s {full.dims}")
            variables[base].levels.append(_Level(number, array))
    return dict(sorted(variables.items()))


def _geotransform(array: ArraySpec, coords: dict[str, np.ndarray],
                  coord_attrs: dict[str, dict[str, Any]]) -> list[float] | None:
    """Affine geotransform of `array`'s two spatial dimensions, when regular."""
    rotated = array.attrs.get("chunkindex_geotransform")
    if rotated:
        return [float(v) for v in rotated]
    kinds = {d: _dimension_kind(d, coord_attrs.get(d, {})) for d in array.dims}
    y_dim = next((d for d in array.dims if kinds[d] == "HORIZONTAL_Y"), None)
    x_dim = next((d for d in array.dims if kinds[d] == "HORIZONTAL_X"), None)
    if y_dim not in coords or x_dim not in coords:
        return None
    x, y = coords[x_dim], coords[y_dim]
    dx, dy = _regular(x), _regular(y)
    if dx is None or dy is None:
        return None
    return [_clean(x[0] - dx / 2), _clean(dx), 0.0, _clean(y[0] - dy / 2), 0.0, _clean(dy)]


def cri_document(assembled: AssembledIndex | list[ArraySpec], files: pa.Table | None = None,
                 base: str = "", root_attrs: dict[str, Any] | None = None,
                 crs: str | None = None) -> tuple[dict[str, Any], dict[str, _Variable]]:
    """The `cri` JSON document (spec §2) of assembled arrays, and the
    variables with their levels in row order."""
    arrays = assembled.arrays if isinstance(assembled, AssembledIndex) else assembled
    coordinate_arrays = {a.dims[0]: a for a in arrays if _is_coordinate(a)}
    coords = {name: np.frombuffer(a.inline, np.dtype(a.dtype)).astype(np.float64)
              for name, a in coordinate_arrays.items()}
    variables = _group_levels(arrays)
    if not variables:
        raise CriError("no data arrays to index")
    doc_arrays: dict[str, Any] = {}
    dimensions: dict[str, Any] = {}
    crs_value = crs
    for variable in variables.values():
        full = variable.levels[0].array
        # `_FillValue` stays: it is the source's nodata, which GDAL's CRI driver reports (the Kerchunk
        # writer leaves it to the .zarray fill_value instead).
        attrs = {k: v for k, v in full.attrs.items() if k not in ("chunkindex", "_CRS", "chunkindex_geotransform")
                 and not k.startswith("chunkindex_")}
        if crs_value is None and isinstance(full.attrs.get("_CRS"), dict):
            crs_value = full.attrs["_CRS"].get("url") or full.attrs["_CRS"].get("wkt")
        info = full.attrs.get("chunkindex", {})
        levels = []
        for item in variable.levels:
            array = item.array
            entry: dict[str, Any] = {"level": item.level, "shape": list(array.shape),
                                     "chunk_shape": list(array.chunks),
                                     "codec": codec_steps(array.chain, array.name)}
            if array.dtype != full.dtype:
                raise CriError(f"{array.name}: dtype {array.dtype} differs from {full.name}'s {full.dtype}")
            gt = _geotransform(array, coords, {n: a.attrs for n, a in coordinate_arrays.items()})
            if gt is not None:
                entry["geotransform"] = gt
            level_info = array.attrs.get("chunkindex", {})
            if "ifd" in level_info:  # provenance: the TIFF IFD of this level
                entry["source"] = {"ifd": int(level_info["ifd"])}
            levels.append(entry)
        band_dim = "band" if "band" in full.dims else None
        # A referenced 1-D array named as its dimension holds that dimension's values.
        role = "coordinate" if len(full.dims) == 1 and full.dims[0] == full.name else "data"
        short = list(getattr(full, "short_edge_dims", ()) or info.get("short_edge_dims") or []) or None
        if short is None and info.get("source_format") == "cog":
            # TIFF writers may store the last strip or edge tiles short (§3.3).
            short = [d for d in full.dims if _dimension_kind(d, {}) in ("HORIZONTAL_Y", "HORIZONTAL_X")]
        doc_arrays[variable.name] = {
            "dims": list(full.dims),
            "dtype": full.dtype if COMPLEX_INT.match(full.dtype) else np.dtype(full.dtype).str,
            "fill_value": json_fill_value(full.fill_value),
            "attrs": attrs, "levels": levels,
            "short_edge_dims": list(short or []), "band_dim": band_dim, "role": role,
            "source": {k: info[k] for k in ("source_format", "source_variable", "mask") if k in info},
        }
        ifds = [item.array.attrs.get("chunkindex", {}).get("ifd") for item in variable.levels]
        if all(isinstance(ifd, int) for ifd in ifds):  # TIFF: the IFD of each level, for validation
            doc_arrays[variable.name]["source"]["ifds"] = ifds
        for position, dim in enumerate(full.dims):
            if dim in dimensions:
                if dimensions[dim]["size"] != full.shape[position]:
                    raise CriError(f"dimension {dim} is {full.shape[position]} long in {full.name} "
                                   f"but {dimensions[dim]['size']} elsewhere")
                continue
            coord = coordinate_arrays.get(dim)
            cattrs = coord.attrs if coord is not None else {}
            entry = {"size": int(full.shape[position])}
            kind = _dimension_kind(dim, cattrs)
            if kind:
                entry["type"] = kind
            for key in ("units", "calendar", "positive", "standard_name", "long_name", "axis"):
                if key in cattrs:
                    entry[key] = cattrs[key]
            if dim in coords:
                values = coords[dim]
                gt = levels[0].get("geotransform")
                if kind in ("HORIZONTAL_X", "HORIZONTAL_Y") and gt is not None and gt[2] == 0 and gt[4] == 0:
                    origin, step = (gt[0], gt[1]) if kind == "HORIZONTAL_X" else (gt[3], gt[5])
                    centres = origin + (np.arange(values.size) + 0.5) * step
                    if np.allclose(centres, values, rtol=0, atol=abs(step) * 1e-6):
                        entry["from_geotransform"] = True
                if not entry.get("from_geotransform"):
                    entry["values"] = values.tolist()
            dimensions[dim] = entry
    for name, entry in doc_arrays.items():
        if entry["role"] == "coordinate" and "values" not in dimensions[name] \
                and not dimensions[name].get("from_geotransform"):
            dimensions[name]["variable"] = name
    doc: dict[str, Any] = {"cri_version": CRI_VERSION}
    if base:
        doc["base"] = base
    doc["arrays"] = doc_arrays
    doc["dimensions"] = dimensions
    crs_doc = _crs_document(crs_value)
    if crs_doc:
        doc["crs"] = crs_doc
    if root_attrs:
        doc["attrs"] = root_attrs
    return doc, variables


FACT_COLUMNS = ("file_size", "file_etag", "file_last_modified")


def file_facts(files: pa.Table | None, base: str) -> dict[str, tuple[Any, Any, Any]]:
    """Per-file facts (size, etag, last-modified) by `path` value (spec §2.5)
    from a listing manifest (url, size, etag, last_modified)."""
    if files is None or not files.num_rows:
        return {}
    urls = files["url"].to_pylist()
    sizes = files["size"].to_pylist() if "size" in files.column_names else [None] * len(urls)
    etags = files["etag"].to_pylist() if "etag" in files.column_names else [None] * len(urls)
    times = ([None if v is None else v.strftime("%Y-%m-%dT%H:%M:%SZ") for v in files["last_modified"].to_pylist()]
             if "last_modified" in files.column_names else [None] * len(urls))
    return {(u[len(base):] if base and u.startswith(base) else u): (size, etag, when)
            for u, size, etag, when in zip(urls, sizes, etags, times)}


# The footprint columns (GeoParquet 1.1): WKB polygon in WGS84 lon/lat and its
# bbox covering struct, whose per-row-group statistics prune spatial queries.
BBOX_TYPE = pa.struct([("xmin", pa.float64()), ("ymin", pa.float64()),
                       ("xmax", pa.float64()), ("ymax", pa.float64())])
FOOTPRINT_FIELDS = (("geometry", pa.binary()), ("bbox", BBOX_TYPE))


def cri_schema(k: int, raw: bool = True, facts: bool = False, footprints: bool = False) -> pa.Schema:
    """Arrow schema of the rows (spec §1) for `k` chunk-coordinate columns
    (`raw` only when some chunk is inline; the per-file fact columns of §2.5
    when the files are known; `geometry` and `bbox` with footprints)."""
    text = pa.dictionary(pa.int32(), pa.string())
    return pa.schema([("variable", text), ("level", pa.int32()),
                      *[(f"c{j}", pa.int32()) for j in range(k)],
                      ("path", text), ("offset", pa.int64()),
                      ("length", pa.int64()), *([("raw", pa.binary())] if raw else []),
                      *([("file_size", pa.dictionary(pa.int32(), pa.int64())), ("file_etag", text),
                         ("file_last_modified", text)] if facts else []),
                      *(FOOTPRINT_FIELDS if footprints else ())])


@dataclass
class _Part:
    """The rows of one (variable, level): its array, and the chunk numbers
    that have rows (None: every chunk)."""

    number: int
    level: int
    array: ArraySpec
    path_ids: np.ndarray
    present: np.ndarray | None
    raw_numbers: np.ndarray | None = None  # chunks stored inline (sorted), with...
    raw_values: list[bytes] | None = None  # ...their encoded bytes

    @property
    def n_rows(self) -> int:
        if self.array.inline is not None:
            return 1
        return self.array.n_chunks if self.present is None else int(self.present.size)

    def cuts(self, target: int) -> list[int]:
        """Row-group cut points: whole steps of the outermost dimension,
        about `target` rows per group."""
        n = self.n_rows
        grid = self.array.chunk_grid
        if n <= target or len(grid) < 2:
            return list(range(0, n, max(target, 1))) + [n]
        per_step = int(np.prod(grid[1:], dtype=np.int64))
        steps = max(1, target // per_step)
        firsts = np.arange(0, grid[0], steps, dtype=np.int64) * per_step  # chunk numbers
        rows = firsts if self.present is None else np.searchsorted(self.present, firsts)
        return sorted(set(rows.tolist()) | {n})


@dataclass
class CriRows:
    """The rows of an index, produced row group by row group in spec order."""

    schema: pa.Schema
    paths: list[str]
    k: int
    variables: list[str]
    parts: list[_Part]
    facts: list[pa.Array] | None = None  # file_size, file_etag, file_last_modified by path id
    c0_offset: int = 0  # added to c0 (rows of files appended after the first c0_offset steps)
    # Array name -> its chunk footprints (`indexes.footprints.ChunkFootprints`;
    # None: the index does not say where its pixels lie, geometry null).
    footprints: dict[str, Any] | None = None

    @property
    def num_rows(self) -> int:
        return sum(p.n_rows for p in self.parts)

    def batch(self, part: _Part, start: int, stop: int) -> pa.RecordBatch:
        """Rows `start:stop` of `part`, built from the reference columns, with
        the path dictionary cut to the ids used (Parquet writes an Arrow
        dictionary whole into every row group)."""
        if part.array.inline is not None:
            return self.batch_of(part, np.zeros(1, np.int64))
        numbers = (np.arange(start, stop, dtype=np.int64) if part.present is None
                   else part.present[start:stop])
        return self.batch_of(part, numbers)

    def batch_of(self, part: _Part, numbers: np.ndarray,
                 columns: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> pa.RecordBatch:
        """The rows of `part`'s chunks `numbers` (C-order chunk numbers, sorted);
        `columns` gives their url index, offset and size where the array holds
        no reference columns (the sharded write streams them)."""
        array, k, n = part.array, self.k, numbers.size
        if not hasattr(self, "_arrow"):
            self._arrow = (pa.array(self.variables, pa.string()), pa.array(self.paths, pa.string()))
        names, all_paths = self._arrow
        if array.inline is not None:
            coords: list[np.ndarray | None] = [np.zeros(1, np.int32) for _ in array.shape]
            path = pa.DictionaryArray.from_arrays(pa.array([None], pa.int32()), pa.array([], pa.string()))
            fact_columns = [pa.DictionaryArray.from_arrays(pa.array([None], pa.int32()), values.slice(0, 0))
                            for values in (self.facts or [])]
            offsets, lengths = np.zeros(1, np.int64), np.array([len(array.inline)], np.int64)
            raw = pa.array([array.inline], pa.binary())
        else:
            coords = []
            rest = numbers
            for size in reversed(array.chunk_grid):
                rest, index = np.divmod(rest, size)
                coords.insert(0, index.astype(np.int32))
            index = array.url_index[numbers] if columns is None else columns[0]
            inline = index < 0  # only chunks listed in raw_numbers have no file
            ids = part.path_ids[np.where(inline, 0, index)] if len(part.path_ids) else np.zeros(n, np.int32)
            low, high = (int(ids[~inline].min()), int(ids[~inline].max())) if (~inline).any() else (0, -1)
            any_inline = bool(inline.any())
            rel = (ids - low).astype(np.int32, copy=False)
            if any_inline:
                rel[inline] = 0
            local = pa.array(rel, pa.int32(), mask=inline if any_inline else None)
            path = pa.DictionaryArray.from_arrays(local, all_paths.slice(low, high - low + 1))
            # Per-file facts: this row group's files' values, deduplicated (the
            # Parquet writer takes a dictionary of distinct values as it is),
            # indexed through the path ids: no hashing per row.
            fact_columns = []
            for values in self.facts or []:
                window = values.slice(low, high - low + 1)
                encoded = window.dictionary_encode()
                if len(encoded.dictionary) == len(window) and not window.null_count:
                    indices = local  # distinct per file (etags): the path's own indices
                else:
                    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)[rel]
                    unknown = inline | (codes < 0) if (any_inline or window.null_count) else None
                    indices = pa.array(codes, pa.int32(), mask=unknown)
                fact_columns.append(pa.DictionaryArray.from_arrays(indices, encoded.dictionary))
            offsets, lengths = ((array.offsets[numbers], array.sizes[numbers]) if columns is None
                                else (columns[1], columns[2]))
            raw = pa.nulls(n, pa.binary())
            if inline.any():
                where = np.searchsorted(part.raw_numbers, numbers[inline])
                values = [part.raw_values[int(w)] for w in where]
                offsets, lengths = np.where(inline, 0, offsets), lengths.copy()
                lengths[inline] = [len(v) for v in values]
                slots: list[bytes | None] = [None] * n
                for row, value in zip(np.flatnonzero(inline).tolist(), values):
                    slots[row] = value
                raw = pa.array(slots, pa.binary())
        geometry_columns: list[pa.Array] = []
        if self.footprints is not None:
            lookup = self.footprints.get(array.name) if array.inline is None else None
            if lookup is None:
                geometry_columns = [pa.nulls(n, pa.binary()), pa.nulls(n, BBOX_TYPE)]
            else:
                geometry_columns = list(lookup.columns(numbers))
        if self.c0_offset and coords and array.inline is None:
            coords[0] = coords[0] + np.int32(self.c0_offset)
        coords += [None] * (k - len(coords))
        columns = [
            pa.DictionaryArray.from_arrays(pa.array(np.full(n, part.number, np.int32)), names),
            pa.array(np.full(n, part.level, np.int32)),
            *[pa.nulls(n, pa.int32()) if c is None else pa.array(c, pa.int32()) for c in coords],
            path, pa.array(np.asarray(offsets, np.int64)), pa.array(np.asarray(lengths, np.int64)),
            *([raw] if "raw" in self.schema.names else []),
            *fact_columns,
            *geometry_columns,
        ]
        return pa.record_batch(columns, schema=self.schema)

    def row_groups(self, target: int = ROW_GROUP_ROWS) -> Iterator[pa.RecordBatch]:
        """One batch per row group, in spec order."""
        for part in self.parts:
            for start, stop in itertools.pairwise(part.cuts(target)):
                yield self.batch(part, start, stop)

    def table(self) -> pa.Table:
        """Every row as one table with every column of §1, `raw` included
        (for the GeoPackage and DuckDB writers)."""
        table = pa.Table.from_batches(list(self.row_groups(1 << 22)), self.schema)
        if "raw" not in table.column_names:
            table = table.add_column(table.schema.get_field_index("length") + 1, "raw",
                                     pa.nulls(table.num_rows, pa.binary()))
        return table


def cri_rows(variables: dict[str, _Variable], base: str, k: int | None = None,
             raw: dict[str, tuple[np.ndarray, list[bytes]]] | None = None,
             facts: dict[str, tuple[Any, Any, Any]] | None = None,
             footprints: dict[str, Any] | None = None) -> CriRows:
    """The rows of every (variable, level) in spec order; nothing per chunk
    is made until a row group is asked for. `raw` maps an array name to the
    chunk numbers (sorted) and bytes of its inline chunks (converters);
    `footprints` an array name to its chunk footprints (geometry columns)."""
    raw = raw or {}
    all_levels = [item for v in variables.values() for item in v.levels]
    k = k if k is not None else max((len(item.array.shape) for item in all_levels), default=0)
    # One path list for the file, ids in order of first use so that a row
    # group (a run of time steps) uses a contiguous run of ids.
    path_ids: dict[str, int] = {}
    mapped: dict[int, np.ndarray] = {}
    parts = []
    for number, variable in enumerate(variables.values()):
        for item in variable.levels:
            array = item.array
            urls = array.urls
            if id(urls) not in mapped:
                ids = np.empty(len(urls), np.int32)
                for position, url in enumerate(urls):
                    relative = url[len(base):] if base and url.startswith(base) else url
                    ids[position] = path_ids.setdefault(relative, len(path_ids))
                mapped[id(urls)] = ids
            present = None
            raw_numbers, raw_values = raw.get(array.name, (None, None))
            if array.inline is None:
                missing = array.url_index < 0
                if raw_numbers is not None and raw_numbers.size:
                    missing = missing.copy()
                    missing[raw_numbers] = False
                present = np.flatnonzero(~missing) if missing.any() else None
            parts.append(_Part(number, item.level, array, mapped[id(urls)], present, raw_numbers, raw_values))
    inline = any(p.array.inline is not None or p.raw_numbers is not None for p in parts)
    fact_arrays = None
    if facts:
        known = [facts.get(path, (None, None, None)) for path in path_ids]
        fact_arrays = [pa.array([f[0] for f in known], pa.int64()), pa.array([f[1] for f in known], pa.string()),
                       pa.array([f[2] for f in known], pa.string())]
    return CriRows(cri_schema(k, raw=inline, facts=fact_arrays is not None, footprints=footprints is not None),
                   list(path_ids), k, list(variables), parts, fact_arrays, footprints=footprints)


PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "store_schema": False, "version": "2.6"}


def write_cri_parquet(assembled: AssembledIndex | list[ArraySpec], target: str | Path,
                      files: pa.Table | None = None, root_attrs: dict[str, Any] | None = None,
                      relative_paths: bool = True, crs: str | None = None,
                      row_group_rows: int = ROW_GROUP_ROWS,
                      raw: dict[str, tuple[np.ndarray, list[bytes]]] | None = None,
                      threads: int | None = None, file_facts: bool = True, footprints: bool = False) -> Path:
    """Write a CRI Parquet index (spec docs/spec/cri-parquet.md) atomically.

    Args:
        assembled: the arrays (the Kerchunk writer's input): overview arrays
            `<var>_ovr<f>` become levels of `<var>`, `_refs_only` variants
            are dropped, 1-D coordinate arrays become `dimensions`.
        target: the `.cri.parquet` file to write (replaced atomically).
        files: the listing manifest (url, size, etag, last_modified, time)
            for the `files` section.
        root_attrs: dataset attributes (`attrs`).
        relative_paths: write paths relative to their common folder (`base`).
        crs: CRS override (EPSG code, WKT, PROJ string); by default the
            arrays' `_CRS` attribute.
        row_group_rows: about this many rows per row group, cut at whole
            steps of the outermost dimension.
        raw: inline chunks per array name: (sorted chunk numbers, bytes),
            for converters of indexes that hold some chunks inline.
        threads: encoding threads (default: one per core).
        file_facts: write each file's size, etag and modification time
            beside `path` (spec §2.5); False leaves them out (a faster write).
        footprints: add each chunk's WGS84 footprint as GeoParquet 1.1
            columns `geometry` (WKB) and `bbox` (xmin, ymin, xmax, ymax
            covering, with row-group statistics) and the `geo` metadata; null
            for arrays whose grid the index does not give.

    Returns:
        The path written.

    Raises:
        CriError: arrays the spec cannot express (an unknown codec, overview
            levels with other dimensions).
    """
    doc, rows = _document_and_rows(assembled, files if file_facts else None, root_attrs, crs, relative_paths, raw,
                                   footprints)
    target = Path(target)
    options = _parquet_options(rows.schema)
    # Key-value metadata goes in the footer (the Arrow schema is not stored).
    metadata = {CRI_KEY.decode(): json.dumps(doc, separators=(",", ":"))}
    if rows.footprints is not None:
        metadata["geo"] = json.dumps(_geo_metadata(rows.footprints))
    tasks = [(part, a, b) for part in rows.parts for a, b in itertools.pairwise(part.cuts(row_group_rows))]
    # Runs of row groups are encoded by several threads into separate buffers
    # (pyarrow releases the GIL), then laid end to end in spec order under one
    # footer. The runs do not depend on the thread count, so neither do the bytes.
    runs = [tasks[k:k + GROUPS_PER_BUFFER] for k in range(0, len(tasks), GROUPS_PER_BUFFER)] or [[]]
    with ThreadPoolExecutor(max_workers=max(1, min(threads or os.cpu_count() or 1, len(runs)))) as pool:
        parts = list(pool.map(lambda run: _encode_row_groups(rows, run, options), runs))
    order = [(i, j) for i, run in enumerate(runs) for j in range(len(run))]
    with atomic_path(target) as staging:
        staging.write_bytes(parquet_splice.assemble(parts, order, metadata))
    return target


def _parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """ParquetWriter options of the rows (encodings, statistics, sort order)."""
    names = schema.names
    coordinate_columns = [n for n in names if re.fullmatch(r"c\d+", n)]
    # Encodings measured on 30 M GHRSST rows: the outermost index changes in
    # runs (delta), middle indices repeat (dictionary), the innermost cycles
    # (plain, which zstd compresses best); offsets and lengths as deltas.
    inner = coordinate_columns[-1:] if len(coordinate_columns) > 1 else []
    return dict(
        PARQUET_OPTIONS,
        # A footprint repeats at every time step: dictionary-encoded per row group.
        use_dictionary=["variable", "path", *coordinate_columns[1:len(coordinate_columns) - len(inner)],
                        *(["geometry"] if "geometry" in names else []),
                        *[c for c in FACT_COLUMNS if c in names]],
        column_encoding={"offset": "DELTA_BINARY_PACKED", "length": "DELTA_BINARY_PACKED", "level": "PLAIN",
                         **({"c0": "DELTA_BINARY_PACKED"} if coordinate_columns else {}),
                         **{c: "PLAIN" for c in inner}},
        write_statistics=["variable", "level", *coordinate_columns,
                          *([f"bbox.{c}" for c in ("xmin", "ymin", "xmax", "ymax")] if "bbox" in names else [])],
        sorting_columns=[pq.SortingColumn(names.index(c)) for c in ("variable", "level", *coordinate_columns)],
        write_batch_size=65_536,
    )


def _encode_row_groups(rows: CriRows, tasks: list[tuple[_Part, int, int]],
                       options: dict[str, Any]) -> parquet_splice.ParquetParts:
    """Row groups `tasks` (part, first row, end row) encoded into one
    in-memory Parquet file, taken apart for splicing."""
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, rows.schema, **options) as writer:
        for part, start, stop in tasks:
            writer.write_batch(rows.batch(part, start, stop), row_group_size=stop - start)
    return parquet_splice.split(sink.getvalue().to_pybytes(), "an encoded row-group buffer")


def _document_and_rows(assembled: AssembledIndex | list[ArraySpec], files: pa.Table | None,
                       root_attrs: dict[str, Any] | None, crs: str | None, relative_paths: bool = True,
                       raw: dict[str, tuple[np.ndarray, list[bytes]]] | None = None, footprints: bool = False
                       ) -> tuple[dict[str, Any], CriRows]:
    arrays = assembled.arrays if isinstance(assembled, AssembledIndex) else assembled
    # The common folder of all URLs is that of the smallest and largest.
    ends = [u for a in arrays if a.inline is None and a.urls for u in (min(a.urls), max(a.urls))]
    base = _common_base([min(ends), max(ends)]) if ends and relative_paths else ""
    if base and not urlparse(base).scheme and not base.startswith("/"):
        base = ""
    doc, variables = cri_document(assembled, files, base, root_attrs, crs)
    lookups = None
    if footprints:
        from chunkindex.indexes.footprints import chunk_footprints

        lookups = {item.array.name: chunk_footprints(item.array, arrays)  # finds level coordinates in ovr<f>/
                   for v in variables.values() for item in v.levels if item.array.inline is None}
    return doc, cri_rows(variables, base, raw=raw, facts=file_facts(files, base), footprints=lookups)


def _geo_metadata(lookups: dict[str, Any]) -> dict[str, Any]:
    """GeoParquet `geo` metadata of the footprint columns, the extent of every array's footprints."""
    from chunkindex.indexes.footprints import geoparquet_metadata

    extents = np.array([f.extent for f in lookups.values() if f is not None])
    extent = ([float(v) for v in (*extents[:, :2].min(axis=0), *extents[:, 2:].max(axis=0))]
              if len(extents) else None)
    return geoparquet_metadata(extent)


def write_cri_gpkg(assembled: AssembledIndex | list[ArraySpec], target: str | Path,
                   files: pa.Table | None = None, root_attrs: dict[str, Any] | None = None,
                   crs: str | None = None, footprints: bool = False) -> Path:
    """Write the GeoPackage form (spec §7.1): table `chunks` with the Parquet
    columns, a unique key index, the document as layer metadata item `cri`;
    with `footprints`, each chunk's WGS84 footprint as the layer's geometry
    `geometry` with its R-tree (no `bbox` column: the R-tree holds the boxes)."""
    from osgeo import gdal, ogr, osr

    gdal.UseExceptions()
    doc, rows = _document_and_rows(assembled, files, root_attrs, crs, footprints=footprints)
    target = Path(target)
    table = rows.table()
    srs, geom_type, layer_options = None, ogr.wkbNone, ["FID=fid"]
    if rows.footprints is not None:
        table = table.drop_columns(["bbox"])
        position = table.schema.get_field_index("geometry")
        table = table.set_column(position, pa.field("geometry", pa.binary(),
                                                    metadata={b"ARROW:extension:name": b"geoarrow.wkb"}),
                                 table["geometry"])
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(4326)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        # Polygons and MultiPolygons (antimeridian) side by side: a generic type.
        geom_type, layer_options = ogr.wkbUnknown, ["FID=fid", "GEOMETRY_NAME=geometry", "SPATIAL_INDEX=YES"]
    # OGR takes plain columns: dictionaries decoded (SQLite has no such encoding).
    for position, column in enumerate(table.schema):
        if pa.types.is_dictionary(column.type):
            table = table.set_column(position, column.name, pc.cast(table[column.name], column.type.value_type))
    with atomic_path(target) as staging:
        ds = gdal.GetDriverByName("GPKG").CreateVector(str(staging))
        layer = ds.CreateLayer("chunks", srs, geom_type=geom_type, options=layer_options)
        for name in table.schema.names:
            if name == "geometry":
                continue
            kind = {"variable": ogr.OFTString, "path": ogr.OFTString, "raw": ogr.OFTBinary,
                    "offset": ogr.OFTInteger64, "length": ogr.OFTInteger64, "file_size": ogr.OFTInteger64,
                    "file_etag": ogr.OFTString, "file_last_modified": ogr.OFTString}.get(name, ogr.OFTInteger)
            layer.CreateField(ogr.FieldDefn(name, kind))
        ds.StartTransaction()
        for batch in table.to_batches(max_chunksize=65536):
            layer.WriteArrow(batch, options=["GEOMETRY_NAME=geometry"] if rows.footprints is not None else [])
        ds.CommitTransaction()
        layer.SetMetadataItem("cri", json.dumps(doc, separators=(",", ":")))
        key = ", ".join(["variable", "level", *[f"c{j}" for j in range(rows.k)]])
        ds.ExecuteSQL(f"CREATE UNIQUE INDEX chunks_key ON chunks ({key})")
        ds.Close()
    return target


def write_cri_duckdb(assembled: AssembledIndex | list[ArraySpec], target: str | Path,
                     files: pa.Table | None = None, root_attrs: dict[str, Any] | None = None,
                     crs: str | None = None) -> Path:
    """Write the DuckDB form (spec §7.2): tables `chunks` (with `file_id`),
    `files`, `arrays`, `cri` and the view `chunk_refs` (Parquet columns)."""
    import duckdb

    doc, rows = _document_and_rows(assembled, files, root_attrs, crs)
    target = Path(target)
    table = rows.table()
    # Row groups carry their own slices of the path dictionary: ids from the values.
    file_id = pc.index_in(pc.cast(table["path"], pa.string()), value_set=pa.array(rows.paths, pa.string()))
    chunks = table.drop_columns(["path", *[c for c in FACT_COLUMNS if c in table.column_names]])
    chunks = chunks.add_column(2 + rows.k, "file_id", file_id)
    chunks = chunks.set_column(0, "variable", pc.cast(chunks["variable"], pa.string()))
    n = len(rows.paths)
    size, etag, modified = rows.facts or [pa.nulls(n, pa.int64()), pa.nulls(n, pa.string()), pa.nulls(n, pa.string())]
    file_rows = pa.table({"file_id": pa.array(range(n), pa.int32()), "path": pa.array(rows.paths, pa.string()),
                          "size": size, "etag": etag, "last_modified": modified})
    array_rows = pa.table({
        "variable": list(doc["arrays"]),
        "dims": [a["dims"] for a in doc["arrays"].values()],
        "dtype": [a["dtype"] for a in doc["arrays"].values()],
        "definition": [json.dumps(a) for a in doc["arrays"].values()],
    })
    with atomic_path(target) as staging:
        con = duckdb.connect(str(staging))
        con.register("chunk_rows", chunks)
        con.register("file_rows", file_rows)
        con.register("array_rows", array_rows)
        con.execute("CREATE TABLE files AS SELECT file_id, path, size, etag, "
                    "CAST(last_modified AS TIMESTAMPTZ) AS last_modified FROM file_rows")
        con.execute("CREATE TABLE arrays AS SELECT variable, dims, dtype, CAST(definition AS JSON) AS definition "
                    "FROM array_rows")
        con.execute("CREATE TABLE chunks AS SELECT * FROM chunk_rows")
        con.execute("CREATE TABLE cri AS SELECT CAST(? AS JSON) AS document", [json.dumps(doc)])
        cols = ", ".join(["c.variable", "c.level", *[f"c.c{j}" for j in range(rows.k)],
                          "f.path", 'c."offset"', "c.length", "c.raw"])
        con.execute(f"CREATE VIEW chunk_refs AS SELECT {cols} FROM chunks c LEFT JOIN files f USING (file_id)")
        con.close()
    return target


def append_cri_parquet(index: str | Path, assembled: AssembledIndex, files: pa.Table | None,
                       time_dim: str, row_group_rows: int = ROW_GROUP_ROWS) -> dict[str, int]:
    """Append the arrays of new files (`assembled`, later in `time_dim` than
    every step of the index) to the CRI Parquet file `index` in place.

    The index's pages are copied as bytes, not re-encoded: only the new rows
    are encoded, and the new file (old row groups of each variable and level,
    then its new ones; one footer with the grown metadata) replaces the old
    one atomically, so a reader sees the old index or the new one.

    Returns:
        Rows appended per variable.

    Raises:
        NotAppendable: when the new arrays do not line up with the index
            (nothing has changed then).
    """
    from chunkindex.indexes.append import NotAppendable

    index = Path(index)
    old = open_index(index)
    old_doc = json.loads(json.dumps(old.document))
    base = old.base or ""
    new_doc, variables = cri_document(assembled, files, base, old_doc.get("attrs"))
    if set(new_doc["arrays"]) != set(old_doc["arrays"]):
        raise NotAppendable(f"the new files hold arrays {sorted(new_doc['arrays'])}, the index "
                            f"{sorted(old_doc['arrays'])}")
    steps = old_doc["dimensions"].get(time_dim, {}).get("size")
    if steps is None:
        raise NotAppendable(f"the index has no dimension {time_dim!r}")
    for name, entry in new_doc["arrays"].items():
        before = old_doc["arrays"][name]
        if entry["dims"][:1] != [time_dim]:
            raise NotAppendable(f"{name} is not stacked along {time_dim} first")
        for key in ("dims", "dtype", "fill_value", "short_edge_dims", "band_dim"):
            if entry.get(key) != before.get(key):
                raise NotAppendable(f"{name}: {key} {entry.get(key)!r} differs from the index's {before.get(key)!r}")
        if len(entry["levels"]) != len(before["levels"]):
            raise NotAppendable(f"{name}: {len(entry['levels'])} levels, the index has {len(before['levels'])}")
        for level, was in zip(entry["levels"], before["levels"]):
            for key in ("chunk_shape", "codec", "geotransform"):
                if level.get(key) != was.get(key):
                    raise NotAppendable(f"{name} level {level['level']}: {key} differs from the index's")
            if level["shape"][1:] != was["shape"][1:] or level["chunk_shape"][0] != 1:
                raise NotAppendable(f"{name} level {level['level']}: shape {level['shape']} does not extend "
                                    f"{was['shape']} along {time_dim}")
    old_values = old_doc["dimensions"][time_dim].get("values")
    new_values = new_doc["dimensions"][time_dim].get("values")
    if old_values is None or new_values is None or (old_values and min(new_values) <= max(old_values)):
        raise NotAppendable(f"the new files are not all later in {time_dim} than the index's")
    if base and any(not u.startswith(base) for a in assembled.arrays if a.inline is None and a.urls
                    for u in (min(a.urls), max(a.urls))):
        raise NotAppendable(f"new files lie outside the index's base {base}")
    rows = cri_rows(variables, base, k=old.k, facts=file_facts(files, base) if "file_size" in old.columns else None)
    if rows.schema.names != old.columns:
        raise NotAppendable(f"the new rows have columns {rows.schema.names}, the index {old.columns}")
    rows.c0_offset = int(steps)
    # Which (variable, level) each old row group holds, from its statistics.
    metadata = old._file.metadata
    position = {name: i for i, name in enumerate(old.columns)}
    old_groups: dict[tuple[str, int], list[int]] = {}
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        v = group.column(position["variable"]).statistics
        lv = group.column(position["level"]).statistics
        if v is None or lv is None or not (v.has_min_max and lv.has_min_max) or v.min != v.max or lv.min != lv.max:
            raise NotAppendable(f"row group {g} of {index} mixes variables or levels (or has no statistics)")
        old_groups.setdefault((v.min, lv.min), []).append(g)
    tasks = [(part, a, b) for part in rows.parts for a, b in itertools.pairwise(part.cuts(row_group_rows))]
    runs = [tasks[k:k + GROUPS_PER_BUFFER] for k in range(0, len(tasks), GROUPS_PER_BUFFER)]
    options = _parquet_options(rows.schema)
    with ThreadPoolExecutor(max_workers=max(1, min(os.cpu_count() or 1, len(runs)))) as pool:
        new_parts = list(pool.map(lambda run: _encode_row_groups(rows, run, options), runs))
    new_groups: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for i, run in enumerate(runs):
        for j, (part, _, _) in enumerate(run):
            new_groups.setdefault((rows.variables[part.number], part.level), []).append((i + 1, j))
    keys = sorted(set(old_groups) | set(new_groups))
    order = [item for key in keys for item in [(0, g) for g in old_groups.get(key, [])] + new_groups.get(key, [])]
    # The grown document: shapes, the time values and the files table.
    doc = old_doc
    for name, entry in doc["arrays"].items():
        for level, grown in zip(entry["levels"], new_doc["arrays"][name]["levels"]):
            level["shape"][0] += grown["shape"][0]
    doc["dimensions"][time_dim]["size"] = steps + len(new_values)
    doc["dimensions"][time_dim]["values"] = list(old_values) + list(new_values)
    kv = {CRI_KEY.decode(): json.dumps(doc, separators=(",", ":"))}
    old_parts = parquet_splice.split(index.read_bytes(), str(index))
    with atomic_path(index) as staging:
        staging.write_bytes(parquet_splice.assemble([old_parts, *new_parts], order, kv))
    return {name: sum(p.n_rows for p in rows.parts if rows.variables[p.number] == name) for name in rows.variables}


# ---------------------------------------------------------------------------
# Reader


def _fill(value: Any, dtype: np.dtype) -> Any:
    if value is None:
        return 0
    if isinstance(value, str):
        return {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}[value]
    return value


def _unshuffle(data: bytes, element_size: int) -> bytes:
    raw = np.frombuffer(data, np.uint8)
    n = raw.size // element_size
    body = raw[:n * element_size].reshape(element_size, n).T.reshape(-1)
    return body.tobytes() + raw[n * element_size:].tobytes()


def _fletcher32(data: bytes) -> bytes:
    import numcodecs

    return bytes(numcodecs.Fletcher32().decode(data))


def _undo_predictor(data: bytes, step: dict[str, Any], dtype: np.dtype, row_length: int) -> bytes:
    """TIFF predictor 2 or 3 undone row by row (spec §3.2)."""
    samples = int(step.get("samples", 1))
    size = dtype.itemsize
    if step["predictor"] == 2:
        if dtype.kind not in "iu":
            raise CriError(f"TIFF predictor 2 on {dtype} samples")
        unsigned = np.dtype(f"u{size}").newbyteorder(dtype.byteorder if dtype.byteorder in "<>" else "=")
        values = np.frombuffer(data, unsigned).astype(f"=u{size}")
        rows = values.reshape(-1, row_length // samples, samples)
        out = np.cumsum(rows, axis=1, dtype=f"=u{size}")  # wraps, as the predictor does
        return out.astype(unsigned).tobytes()
    if step["predictor"] == 3:
        raw = np.frombuffer(data, np.uint8).reshape(-1, size * row_length)
        undone = np.cumsum(raw.reshape(raw.shape[0], -1, samples), axis=1, dtype=np.uint8).reshape(raw.shape)
        # Byte planes (most significant first) back to big-endian values.
        values = undone.reshape(-1, size, row_length).transpose(0, 2, 1)
        return np.ascontiguousarray(values).view(np.dtype(f">{dtype.kind}{size}")).astype(dtype).tobytes()
    raise CriError(f"TIFF predictor {step['predictor']} is not defined by CRI {CRI_VERSION}")


def _unpack_bits(data: bytes, bits: int, row_length: int) -> bytes:
    """Rows of `row_length` samples packed MSB first in `bits` bits, each row
    padded to a byte, as one byte per sample (spec §3.1 `unpack_bits`)."""
    if bits not in (1, 2, 4):
        raise CriError(f"unpack_bits with {bits} bits is not defined by CRI {CRI_VERSION}")
    row_bytes = -(-row_length * bits // 8)
    raw = np.frombuffer(data, np.uint8)
    rows = raw[: raw.size - raw.size % row_bytes].reshape(-1, row_bytes)
    planes = np.unpackbits(rows, axis=1)[:, : row_length * bits].reshape(rows.shape[0], row_length, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint8)
    return (planes * weights).sum(axis=2, dtype=np.uint8).tobytes()


def _lerc(data: Any, dtype: np.dtype) -> bytes:
    """A LERC blob as chunk bytes in `dtype`'s byte order (spec §3.1 `lerc`).

    LERC decodes to native values; TIFF writers store a big-endian file's
    samples byte-swapped inside the blob (libtiff swaps them back after
    decoding), so the decoded bytes are the stored order as they are. Invalid
    pixels of the blob's mask read as NaN for floats, as GDAL reads them.
    """
    import imagecodecs

    values, masks = imagecodecs.lerc_decode(data, masks=True)
    values = np.asarray(values)
    out = np.frombuffer(values.tobytes(), dtype).reshape(values.shape).copy()
    if masks is not None and dtype.kind == "f":
        valid = np.asarray(masks, bool)
        if valid.ndim < out.ndim:  # one mask for every sample of a pixel
            valid = valid.reshape(valid.shape + (1,) * (out.ndim - valid.ndim))
        elif valid.shape != out.shape and valid.ndim == out.ndim:  # (samples, h, w) masks
            valid = np.moveaxis(valid, 0, -1)
        out[~np.broadcast_to(valid, out.shape)] = np.nan
    return out.tobytes()


def decode_chunk(data: bytes, steps: list[dict[str, Any]], dtype: np.dtype, row_length: int) -> bytes:
    """Stored bytes -> chunk bytes in `dtype`'s byte order (spec §3.1).

    `row_length` is the predictor row (samples × chunk width) in elements.

    Raises:
        CriError: an unknown step (spec §3.1: readers refuse it).
    """
    import imagecodecs

    buf: Any = data
    for step in steps:
        name = step["name"]
        if name == "deflate":
            buf = imagecodecs.zlib_decode(buf)
        elif name == "gzip":
            buf = imagecodecs.gzip_decode(buf)
        elif name == "zstd":
            buf = imagecodecs.zstd_decode(buf)
        elif name == "lzma":
            buf = imagecodecs.lzma_decode(buf)
        elif name == "lz4":
            framing = step.get("framing", "numcodecs")
            if framing == "numcodecs":
                buf = imagecodecs.lz4_decode(buf, header=True)
            elif framing == "hdf5":
                buf = imagecodecs.lz4h5_decode(buf)
            elif framing == "frame":
                buf = imagecodecs.lz4f_decode(buf)
            else:
                raise CriError(f"lz4 framing {framing!r} is not defined by CRI {CRI_VERSION}")
        elif name == "lzw":
            buf = imagecodecs.lzw_decode(buf)
        elif name == "packbits":
            buf = imagecodecs.packbits_decode(buf)
        elif name == "blosc":
            buf = imagecodecs.blosc_decode(buf)
        elif name == "jpeg":
            tables = base64.b64decode(step["tables"]) if step.get("tables") else None
            space = step.get("colorspace")
            kwargs: dict[str, Any] = {}
            if space == "YCbCr":
                kwargs = {"colorspace": "YCBCR", "outcolorspace": "RGB"}
            elif space in ("RGB", "CMYK"):
                kwargs = {"colorspace": space, "outcolorspace": space}
            buf = imagecodecs.jpeg8_decode(buf, tables=tables, **kwargs)
        elif name == "webp":
            buf = imagecodecs.webp_decode(buf)
        elif name == "png":
            buf = imagecodecs.png_decode(buf)
        elif name == "lerc":
            buf = _lerc(bytes(buf), dtype)
        elif name == "unpack_bits":
            buf = _unpack_bits(bytes(buf), int(step["bits"]), row_length)
        elif name == "jpegxl":
            buf = imagecodecs.jpegxl_decode(buf)
        elif name == "jpeg2000":
            buf = imagecodecs.jpeg2k_decode(buf)
        elif name == "shuffle":
            buf = _unshuffle(bytes(buf), int(step["element_size"]))
        elif name == "fletcher32":
            buf = _fletcher32(bytes(buf))
        elif name == "tiff_predictor":
            if isinstance(buf, np.ndarray):  # after an image step: back to bytes in dtype order
                buf = buf.astype(dtype).tobytes()
            buf = _undo_predictor(bytes(buf), step, dtype, row_length)
        else:
            raise CriError(f"unknown decode step {name!r} (CRI {CRI_VERSION} readers refuse it)")
    if isinstance(buf, np.ndarray):
        return buf.astype(dtype, copy=False).tobytes()
    return bytes(buf)


@dataclass
class CriArray:
    """One array of an index (spec §2.1), for the reader."""

    name: str
    dims: list[str]
    dtype: np.dtype
    fill_value: Any
    attrs: dict[str, Any]
    levels: dict[int, dict[str, Any]]
    short_edge_dims: list[str]
    band_dim: str | None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.levels[0]["shape"])

    def level(self, level: int) -> dict[str, Any]:
        if level not in self.levels:
            raise CriError(f"{self.name} has no level {level} (levels: {sorted(self.levels)})")
        return self.levels[level]

    def row_length(self, level: int) -> int:
        """Elements of one TIFF predictor row: samples × chunk width."""
        chunk = self.level(level)["chunk_shape"]
        if self.band_dim is not None and self.dims[-1] == self.band_dim and len(chunk) > 1:
            return int(chunk[-1] * chunk[-2])
        return int(chunk[-1]) if chunk else 1


def _as_slices(window: Any, shape: Sequence[int]) -> list[tuple[int, int]]:
    if window is None:
        return [(0, s) for s in shape]
    if not isinstance(window, tuple | list):
        window = (window,)
    window = list(window) + [slice(None)] * (len(shape) - len(window))
    if len(window) != len(shape):
        raise CriError(f"window has {len(window)} dimensions, the array {len(shape)}")
    out = []
    for item, size in zip(window, shape):
        if isinstance(item, slice):
            start, stop, step = item.indices(size)
            if step != 1:
                raise CriError("strided windows are not supported; read and slice")
        elif isinstance(item, tuple | list) and len(item) == 2:
            start, stop = int(item[0]), int(item[1])
        else:
            start, stop = int(item), int(item) + 1
        if not 0 <= start <= stop <= size:
            raise CriError(f"window [{start}, {stop}) is outside 0..{size}")
        out.append((start, stop))
    return out


_SPACE = re.compile(r"\s*")


def _document_head(raw: str) -> dict[str, Any]:
    """The members of the `cri` JSON object up to and including `arrays`, when
    `cri_version` and `base` come before it (as chunkindex writes them);
    otherwise every member. Nothing after `arrays` is parsed then."""
    decoder = json.JSONDecoder()
    i = _SPACE.match(raw, 0).end()
    if raw[i:i + 1] != "{":
        raise ValueError("not a JSON object")
    i += 1
    head: dict[str, Any] = {}
    while True:
        i = _SPACE.match(raw, i).end()
        if raw[i:i + 1] == "}":
            break
        key, i = decoder.raw_decode(raw, i)
        i = _SPACE.match(raw, i).end()
        if raw[i:i + 1] != ":":
            raise ValueError(f"':' expected at {i}")
        value, i = decoder.raw_decode(raw, _SPACE.match(raw, i + 1).end())
        head[key] = value
        if key == "arrays" and {"cri_version", "base"} <= head.keys():
            return head
        i = _SPACE.match(raw, i).end()
        if raw[i:i + 1] == ",":
            i += 1
    if "arrays" not in head:
        raise ValueError("no 'arrays'")
    return head


class CriIndex:
    """A CRI Parquet index opened for lookups and reads (spec §6)."""

    def __init__(self, path: str | Path, store_options: dict[str, Any] | None = None):
        self.path = str(path)
        self.store_options = dict(store_options or {})
        self._file = pq.ParquetFile(self.path, read_dictionary=["path"])
        raw = (self._file.metadata.metadata or {}).get(CRI_KEY)
        if raw is None:
            raise CriError(f"{self.path} is not a CRI index (no 'cri' key in its Parquet metadata)")
        self._raw = raw.decode()
        self._document: dict[str, Any] | None = None
        try:
            head = _document_head(self._raw)
        except (json.JSONDecodeError, ValueError) as exc:
            raise CriError(f"{self.path}: the 'cri' metadata is not JSON: {exc}") from None
        version = str(head.get("cri_version", ""))
        if not re.fullmatch(r"\d+\.\d+", version) or int(version.split(".")[0]) != SUPPORTED_MAJOR:
            raise CriError(f"{self.path}: CRI version {version!r} is not supported (this reader reads "
                           f"{SUPPORTED_MAJOR}.x)")
        self.columns = self._file.schema_arrow.names
        self.k = sum(1 for c in self.columns if re.fullmatch(r"c\d+", c))
        self._column_index = {name: i for i, name in enumerate(self.columns)}
        self._key_columns = ["variable", "level", *[f"c{j}" for j in range(self.k)]]
        self.arrays: dict[str, CriArray] = {}
        for name, entry in head["arrays"].items():
            levels = {int(level["level"]): level for level in entry["levels"]}
            dtype = storage_dtype(entry["dtype"])
            self.arrays[name] = CriArray(name, list(entry["dims"]), dtype,
                                         _fill(entry.get("fill_value"), dtype),
                                         entry.get("attrs", {}), levels, list(entry.get("short_edge_dims", [])),
                                         entry.get("band_dim"))
        self.base: str | None = head.get("base")

    @property
    def document(self) -> dict[str, Any]:
        """The whole `cri` document (parsed on first use: a lookup needs only
        its head, and a long time axis makes the rest the bulk)."""
        if self._document is None:
            self._document = json.loads(self._raw)
        return self._document

    @property
    def dimensions(self) -> dict[str, Any]:
        return self.document.get("dimensions", {})

    @property
    def num_rows(self) -> int:
        return self._file.metadata.num_rows

    @property
    def num_row_groups(self) -> int:
        return self._file.metadata.num_row_groups

    @property
    def files(self) -> dict[str, Any] | None:
        """Per-file facts (spec §2.5) as {"columns", "rows"}, one row per
        path: the `files` object of the document, or the distinct values of
        the `file_*` columns beside `path`."""
        if "files" in self.document:
            return self.document["files"]
        columns = [c for c in FACT_COLUMNS if c in self.columns]
        if not columns:
            return None
        table = self._file.read(columns=["path", *columns], use_threads=False)
        table = table.set_column(0, "path", pc.cast(table["path"], pa.string()))
        table = table.filter(pc.is_valid(table["path"]))
        unique = table.group_by(["path", *columns], use_threads=False).aggregate([]) if table.num_rows else table
        rows = sorted(zip(*(unique[c].to_pylist() for c in ["path", *columns])))
        return {"columns": ["path", *[c.removeprefix("file_") for c in columns]], "rows": [list(r) for r in rows]}

    def __repr__(self) -> str:
        return f"CriIndex({self.path!r}, arrays={list(self.arrays)})"

    def array(self, variable: str) -> CriArray:
        if variable not in self.arrays:
            raise CriError(f"{self.path} has no array {variable!r}; arrays: {', '.join(self.arrays)}")
        return self.arrays[variable]

    def resolve(self, path: str) -> str:
        """An absolute URL or local path for a `path` value (spec §4)."""
        if urlparse(path).scheme in ("s3", "gs", "az", "http", "https", "file") or path.startswith("/"):
            return path
        if self.base:
            return self.base + path
        return str(Path(self.path).resolve().parent / path)

    def _stats(self, group: int, column: str) -> tuple[Any, Any] | None:
        stats = self._file.metadata.row_group(group).column(self._column_index[column]).statistics
        if stats is None or not stats.has_min_max:
            return None
        return stats.min, stats.max

    def _bound(self, group: int, key: tuple[Any, ...], which: int) -> int:
        """-1/0/+1: the group's rows are certainly before `key` / may hold it /
        are certainly after it, from min/max statistics (spec §1.3 order:
        the max tuple is >= the last row, the min tuple <= the first)."""
        for column, value in zip(self._key_columns, key):
            stats = self._stats(group, column)
            if stats is None:
                return 0
            bound = stats[which]
            if bound == value:
                continue
            if which == 1:
                return -1 if bound < value else 0
            return 1 if bound > value else 0
        return 0

    def _candidate_groups(self, low: tuple[Any, ...], high: tuple[Any, ...]) -> range:
        """Row groups that may hold rows between `low` and `high` (sorted
        rows: binary search on statistics, ~2 log2(groups) probes)."""
        n = self._file.metadata.num_row_groups
        lo, hi = 0, n
        while lo < hi:  # first group not certainly before `low`
            mid = (lo + hi) // 2
            if self._bound(mid, low, 1) < 0:
                lo = mid + 1
            else:
                hi = mid
        first = lo
        lo, hi = first, n
        while lo < hi:  # first group certainly after `high`
            mid = (lo + hi) // 2
            if self._bound(mid, high, 0) > 0:
                hi = mid
            else:
                lo = mid + 1
        return range(first, lo)

    def rows(self, variable: str, level: int = 0, box: Sequence[tuple[int, int]] | None = None) -> pa.Table:
        """Rows of `variable` at `level` whose chunk indices lie in `box`
        (inclusive (lo, hi) per dimension; None: all), found by binary search
        over row-group statistics and filtered in the groups read."""
        array = self.array(variable)
        meta = array.level(level)
        ndim = len(array.dims)
        box = list(box) if box is not None else [(0, max(math.ceil(s / c) - 1, 0))
                                                 for s, c in zip(meta["shape"], meta["chunk_shape"])]
        columns = [f"c{j}" for j in range(ndim)] + ["path", "offset", "length"]
        groups = self._candidate_groups((variable, level, *[b[0] for b in box]),
                                        (variable, level, *[b[1] for b in box]))
        if not groups:
            empty = columns + (["raw"] if "raw" in self.columns else [])
            return pa.table({c: pa.array([], self._file.schema_arrow.field(c).type) for c in empty})
        mixed = any(self._stats(g, "variable") != (variable, variable) or self._stats(g, "level") != (level, level)
                    for g in (groups[0], groups[-1]))
        table = self._file.read_row_groups(list(groups), columns=columns + (["variable", "level"] if mixed else []),
                                           use_threads=False)
        keep = np.ones(table.num_rows, bool)
        if mixed:
            keep &= (pc.equal(table["variable"], variable).to_numpy(zero_copy_only=False)
                     & (table["level"].to_numpy() == level))
        for j, (lo, hi) in enumerate(box):
            values = table[f"c{j}"].to_numpy()
            if lo > 0 or hi < np.iinfo(np.int32).max:
                keep &= (values >= lo) & (values <= hi)
        table = table.select(columns) if keep.all() else table.select(columns).filter(pa.array(keep))
        if "raw" in self.columns:
            # Inline rows are rare: their bytes are read only when some row has no path.
            if table["path"].null_count:
                raw = self._file.read_row_groups(list(groups), columns=["raw"], use_threads=False)["raw"]
                raw = raw if keep.all() else raw.filter(pa.array(keep))
            else:
                raw = pa.nulls(table.num_rows, pa.binary())
            table = table.append_column("raw", raw)
        return table

    def refs(self, variable: str, chunk: Sequence[int], level: int = 0) -> dict[str, Any] | None:
        """The reference of one chunk: {path, url, offset, length} or
        {raw}; None when the chunk has no row (it reads as the fill value)."""
        array = self.array(variable)
        grid = [math.ceil(s / c) for s, c in zip(array.level(level)["shape"], array.level(level)["chunk_shape"])]
        if len(chunk) != len(grid) or any(not 0 <= i < g for i, g in zip(chunk, grid)):
            raise CriError(f"chunk {tuple(chunk)} is outside the chunk grid {tuple(grid)} of {variable} level {level}")
        table = self.rows(variable, level, [(int(i), int(i)) for i in chunk])
        if table.num_rows == 0:
            return None
        row = table.slice(0, 1).to_pylist()[0]
        if row["path"] is None:
            return {"raw": row.get("raw")}
        return {"path": row["path"], "url": self.resolve(row["path"]), "offset": row["offset"],
                "length": row["length"]}

    def read(self, variable: str, window: Any = None, level: int = 0, max_gap: int = 0,
             concurrency: int = 16) -> np.ndarray:
        """The samples of `window` (slices, (start, stop) pairs or indices per
        dimension; None = everything) of `variable` at `level`.

        Byte ranges are fetched through obstore (local, S3, HTTP), ranges of
        one file closer than `max_gap` bytes merged into one request, files
        fetched concurrently; chunks decoded per the metadata's chain.
        Complex integer samples (CInt16, CInt32) read as complex floats of
        twice their size, as GDAL's Python bindings read them.
        """
        out = self._read(variable, window, level, max_gap, concurrency)
        if out.dtype.names:  # (real, imag) integer pairs
            values = np.empty(out.shape, np.complex64 if out.dtype.itemsize == 4 else np.complex128)
            values.real, values.imag = out["real"], out["imag"]
            return values
        return out

    def _read(self, variable: str, window: Any, level: int, max_gap: int, concurrency: int) -> np.ndarray:
        array = self.array(variable)
        meta = array.level(level)
        shape, chunk_shape = meta["shape"], meta["chunk_shape"]
        spans = _as_slices(window, shape)
        out = np.full([b - a for a, b in spans], array.fill_value, dtype=array.dtype.newbyteorder("="))
        if out.size == 0:
            return out
        box = [(a // c, (b - 1) // c) for (a, b), c in zip(spans, chunk_shape)]
        table = self.rows(variable, level, box)
        if table.num_rows == 0:
            return out
        payloads = self._fetch(table, max_gap, concurrency)
        coords = np.stack([table[f"c{j}"].to_numpy() for j in range(len(shape))], axis=1)
        steps = meta["codec"]
        row_length = array.row_length(level)
        full_bytes = int(np.prod(chunk_shape)) * array.dtype.itemsize
        for index, payload in zip(coords, payloads):
            data = decode_chunk(payload, steps, array.dtype, row_length)
            block = self._place(array, level, index, data, full_bytes)
            origin = [int(i) * c for i, c in zip(index, chunk_shape)]
            src, dst = [], []
            for (a, b), o, c in zip(spans, origin, chunk_shape):
                lo, hi = max(a, o), min(b, o + c)
                src.append(slice(lo - o, hi - o))
                dst.append(slice(lo - a, hi - a))
            out[tuple(dst)] = block[tuple(src)]
        return out

    def _place(self, array: CriArray, level: int, index: np.ndarray, data: bytes, full_bytes: int) -> np.ndarray:
        """A decoded chunk as a full chunk_shape block (short edge chunks padded, spec §3.3)."""
        meta = array.level(level)
        shape, chunk_shape = meta["shape"], list(meta["chunk_shape"])
        itemsize = array.dtype.itemsize
        if len(data) == full_bytes:
            return np.frombuffer(data, array.dtype).reshape(chunk_shape)
        for d in array.short_edge_dims:
            j = array.dims.index(d)
            if (int(index[j]) + 1) * chunk_shape[j] < shape[j]:
                continue  # not the last chunk along d
            other = itemsize * int(np.prod(chunk_shape[:j] + chunk_shape[j + 1:]))
            n, rest = divmod(len(data), other)
            valid = shape[j] - int(index[j]) * chunk_shape[j]
            if rest == 0 and valid <= n < chunk_shape[j]:
                short = list(chunk_shape)
                short[j] = n
                block = np.full(chunk_shape, array.fill_value, array.dtype)
                block[tuple(slice(0, s) for s in short)] = np.frombuffer(data, array.dtype).reshape(short)
                return block
            break
        raise CriError(f"{array.name} level {level} chunk {tuple(int(i) for i in index)} decodes to {len(data)} "
                       f"bytes, not {full_bytes} (and is not a valid short edge chunk)")

    def _fetch(self, table: pa.Table, max_gap: int, concurrency: int) -> list[bytes]:
        """The stored bytes of every row, in row order."""
        paths = table["path"].to_pylist()
        offsets = table["offset"].to_numpy()
        lengths = table["length"].to_numpy()
        raws = table["raw"].to_pylist() if "raw" in table.column_names else [None] * table.num_rows
        result: list[bytes | None] = list(raws)
        by_file: dict[str, list[int]] = {}
        for row, path in enumerate(paths):
            if path is None:
                if raws[row] is None:
                    raise CriError(f"{self.path}: a row has neither path nor raw")
                continue
            by_file.setdefault(path, []).append(row)
        plans = []
        for path, rows in by_file.items():
            rows_sorted = sorted(rows, key=lambda r: offsets[r])
            ranges: list[list[int]] = []  # [start, end, rows...]
            for r in rows_sorted:
                start, end = int(offsets[r]), int(offsets[r] + lengths[r])
                if ranges and start <= ranges[-1][1] + max_gap:
                    ranges[-1][1] = max(ranges[-1][1], end)
                    ranges[-1].append(r)
                else:
                    ranges.append([start, end, r])
            plans.append((self.resolve(path), ranges))
        fetched = asyncio.run(_fetch_all(plans, self.store_options, concurrency))
        for (_, ranges), buffers in zip(plans, fetched):
            for item, buffer in zip(ranges, buffers):
                start = item[0]
                view = memoryview(buffer)
                for r in item[2:]:
                    a = int(offsets[r]) - start
                    result[r] = bytes(view[a:a + int(lengths[r])])
        return result  # type: ignore[return-value]


_STORES: dict[tuple[str, str], Any] = {}


def _store_and_key(url: str, options: dict[str, Any]) -> tuple[Any, str]:
    """An obstore store for the folder of `url` (cached) and the object key."""
    from chunkindex.sources.stores import StoreSpec, open_store

    if not urlparse(url).scheme:
        url = Path(url).resolve().as_uri()
    folder, _, key = url.rpartition("/")
    cache_key = (folder, json.dumps(options, sort_keys=True, default=str))
    if cache_key not in _STORES:
        _STORES[cache_key] = open_store(StoreSpec(folder + "/", dict(options)))
    return _STORES[cache_key], key


async def _fetch_all(plans: list[tuple[str, list[list[int]]]], options: dict[str, Any],
                     concurrency: int) -> list[list[bytes]]:
    import obstore

    limit = asyncio.Semaphore(concurrency)

    async def one(url: str, ranges: list[list[int]]) -> list[bytes]:
        store, key = _store_and_key(url, options)
        async with limit:
            try:
                buffers = await obstore.get_ranges_async(store, key, starts=[r[0] for r in ranges],
                                                         ends=[r[1] for r in ranges])
            except Exception as exc:
                raise CriError(f"reading {len(ranges)} byte ranges of {url}: {exc}") from exc
        return [bytes(b) for b in buffers]

    return list(await asyncio.gather(*(one(url, ranges) for url, ranges in plans)))


def open_index(path: str | Path, store_options: dict[str, Any] | None = None) -> CriIndex:
    """Open a CRI Parquet index (`*.cri.parquet`).

    Args:
        path: the index file.
        store_options: obstore options for the referenced files (endpoint,
            region, skip_signature, client_options, ...).

    Raises:
        CriError: the file is not a CRI index or has an unsupported version.
    """
    return CriIndex(path, store_options)
