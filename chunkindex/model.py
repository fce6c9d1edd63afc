"""Format-neutral description of the arrays an index holds, with their
chunk references as numpy columns in C-order chunk number: the chunk grid
(`ChunkGrid`, computed here and nowhere else), arrays (`ArraySpec`), the
stacking of files' chunks along time, coordinates and CF time."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from chunkindex.codecs import REFS_ONLY_NOTE, CodecChain, encode_chunk

log = logging.getLogger(__name__)


INT64 = pa.int64()


def list_column(values: list[np.ndarray], value_type: pa.DataType = INT64) -> pa.ListArray:
    """An Arrow list column from numpy arrays, built in one concatenation
    (which also converts them, whatever their integer type and byte order)."""
    lengths = np.fromiter((v.size for v in values), dtype=np.int32, count=len(values))
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    dtype = value_type.to_pandas_dtype()
    flat = np.concatenate(values, dtype=dtype, casting="same_kind") if values else np.zeros(0, dtype)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, value_type))


@dataclass(frozen=True)
class ChunkGrid:
    """The regular chunk grid of an array of `shape` in chunks of `chunks`
    (C-order chunk numbers; a 0-d array has one chunk, key "0")."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]

    @classmethod
    def of(cls, shape: Sequence[int], chunks: Sequence[int]) -> ChunkGrid:
        return cls(tuple(int(s) for s in shape), tuple(int(c) for c in chunks))

    @classmethod
    def from_zarray(cls, zarray: dict[str, Any]) -> ChunkGrid:
        return cls.of(zarray["shape"], zarray["chunks"])

    @property
    def counts(self) -> tuple[int, ...]:
        """Chunks along each axis."""
        return tuple(math.ceil(s / c) if c else 0 for s, c in zip(self.shape, self.chunks))

    @property
    def n_chunks(self) -> int:
        return int(np.prod(self.counts, dtype=np.int64)) if self.shape else 1

    def number(self, index: Sequence[int]) -> int:
        """C-order number of the chunk at `index`."""
        return int(np.ravel_multi_index(tuple(index), self.counts)) if self.shape else 0

    def index(self, number: int) -> tuple[int, ...]:
        """Position of chunk `number` along each axis."""
        return tuple(int(i) for i in np.unravel_index(number, self.counts)) if self.shape else ()

    def contains(self, index: Sequence[int]) -> bool:
        counts = self.counts
        return len(index) == len(counts) and all(0 <= k < g for k, g in zip(index, counts))

    def key(self, number: int) -> str:
        """Zarr v2 key of chunk `number` ("." separated)."""
        return ".".join(str(i) for i in self.index(number)) or "0"

    def keys(self, numbers: np.ndarray) -> list[str]:
        """Zarr v2 keys of many chunks at once (vectorised)."""
        import pyarrow.compute as pc

        if not self.shape:
            return ["0"] * numbers.size
        index = np.unravel_index(numbers, self.counts)
        parts = [pc.cast(pa.array(i.astype(np.int64)), pa.string()) for i in index]
        return pc.binary_join_element_wise(*parts, ".").to_pylist()

    def region(self, index: Sequence[int]) -> tuple[list[int], list[int]]:
        """(start, count) of the array elements of the chunk at `index` (clipped to the array)."""
        start = [i * c for i, c in zip(index, self.chunks)]
        count = [min(c, s - st) for c, s, st in zip(self.chunks, self.shape, start)]
        return start, count


def stacked_numbers(grid: ChunkGrid, axis: int, first: int | np.ndarray, local_counts: Sequence[int],
                    numbers: np.ndarray) -> np.ndarray:
    """Chunk numbers in `grid` of one file's chunks `numbers` (C order in the
    file's own grid of `local_counts` chunks), when the file's first chunk
    along the stacking `axis` is chunk `first` there (an array of firsts,
    shaped to broadcast, places many files at once)."""
    index = list(np.unravel_index(numbers, tuple(local_counts)))
    index[axis] = index[axis] + first
    return np.ravel_multi_index(tuple(np.broadcast_arrays(*index)), grid.counts)


@dataclass
class ReferenceColumns:
    """The reference columns of an array being stacked from files: the file
    of each chunk (-1: no data), its offset and size."""

    url_index: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray

    @classmethod
    def empty(cls, n_chunks: int) -> ReferenceColumns:
        return cls(np.full(n_chunks, -1, np.int32), np.zeros(n_chunks, np.int64), np.zeros(n_chunks, np.int64))

    def place(self, targets: np.ndarray, file_number: np.ndarray | int, offsets: np.ndarray,
              sizes: np.ndarray) -> None:
        """Put chunks at chunk numbers `targets`, from file(s) `file_number`."""
        self.url_index[targets] = file_number
        self.offsets[targets] = offsets
        self.sizes[targets] = sizes


@dataclass
class ArraySpec:
    """One Zarr v2 array: metadata plus one reference per chunk.

    `url_index[n]` is the position in `urls` of chunk number `n`'s file, or -1
    for a chunk with no data (it then reads as `fill_value`, carried inline as
    `missing_raw` where the format needs a row). `inline` holds the whole
    encoded content of a small single-chunk array (coordinates).
    `short_edge_dims` names the dimensions along which the last chunk is
    stored short (a TIFF's short last strip or short edge tiles): the CRI
    index carries such arrays (spec §3.3), Zarr/Kerchunk cannot.
    """

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: str
    fill_value: Any
    chain: CodecChain
    attrs: dict[str, Any] = field(default_factory=dict)
    urls: list[str] = field(default_factory=list)
    url_index: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    missing_raw: bytes | None = None
    inline: bytes | None = None
    short_edge_dims: tuple[str, ...] = ()
    # (y, x) dimension names where the source says which axes are spatial
    # (a TIFF's image axes; CF axis/units of NetCDF coordinates).
    spatial_dims: tuple[str, str] | None = None

    @property
    def grid(self) -> ChunkGrid:
        return ChunkGrid(self.shape, self.chunks)

    @property
    def chunk_grid(self) -> tuple[int, ...]:
        return self.grid.counts

    @property
    def n_chunks(self) -> int:
        return self.grid.n_chunks

    @property
    def n_missing(self) -> int:
        return int((self.url_index < 0).sum()) if self.inline is None else 0

    def zarray(self) -> dict[str, Any]:
        return {
            "zarr_format": 2,
            "shape": list(self.shape),
            "chunks": list(self.chunks),
            "dtype": self.dtype,
            "compressor": self.chain.compressor,
            "filters": self.chain.zarray_filters(),
            "fill_value": json_fill_value(self.fill_value),
            "order": "C",
            "dimension_separator": ".",
        }

    def zattrs(self) -> dict[str, Any]:
        # `_FillValue` is left to the .zarray fill_value, as kerchunk does:
        # GDAL's netCDF writer fails on a `_FillValue` attribute copied after
        # the data (gdalmdimtranslate to netCDF), and readers take fill_value.
        return {"_ARRAY_DIMENSIONS": list(self.dims), **{k: v for k, v in self.attrs.items() if k != "_FillValue"}}

    def fill_missing(self, encodable: bool | None = None) -> None:
        """Encode the fill chunk that stands in for chunks with no data
        (`encodable`: whether numcodecs can encode the chain; by default,
        whether Python decodes it)."""
        can_encode = self.chain.python_decodable if encodable is None else encodable
        if self.chain.compressor and self.chain.compressor["id"] == "imagecodecs_jpeg":
            # A lossy fill chunk would not read as the fill value: leave such
            # chunks without a reference, which Zarr readers read as fill_value.
            can_encode = False
        if self.inline is None and self.missing_raw is None and can_encode and self.n_missing:
            block = np.full(self.chunks, self.fill_value if self.fill_value is not None else 0,
                            dtype=storage_dtype(self.dtype))
            self.missing_raw = encode_chunk(self.chain, block)

    def refs_only_variant(self) -> ArraySpec:
        """The same references under a chain GDAL opens and no reader can
        decode (`CodecChain.refs_only`): GetRawBlockInfo works, every pixel
        read fails. The true chain stays in the attributes."""
        info = dict(self.attrs["chunkindex"], codec=self.chain.as_attribute(), gdal_decodable=False,
                    refs_only=True, variant_of=self.name, warning=REFS_ONLY_NOTE)
        attrs = {**self.attrs, "chunkindex": info, "chunkindex_warning": REFS_ONLY_NOTE.upper()}
        # Chunks with no data stay without a reference (no fill chunk can be
        # encoded in a chain that cannot decode): zarr-python reads them as
        # the fill value, which is their true value; GDAL refuses them.
        return dataclasses.replace(self, name=refs_only_name(self.name), chain=self.chain.refs_only(),
                                   attrs=attrs, missing_raw=None)


REFS_ONLY_GROUP = "refs_only"


def refs_only_name(name: str) -> str:
    """Where the references-only variant of array `name` lives: the sub-group
    `refs_only/` of the array's own group (so it shares its dimensions and
    coordinates, and stays out of the group's data variables)."""
    group, _, base = name.rpartition("/")
    return f"{group}/{REFS_ONLY_GROUP}/{base}" if group else f"{REFS_ONLY_GROUP}/{base}"


@dataclass
class AssembledIndex:
    """Arrays of an index and what was left out along the way."""

    arrays: list[ArraySpec]
    skipped_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Array name -> chunks with no data, where the arrays carry no reference
    # columns to count them from (the sharded write's combined arrays).
    missing: dict[str, int] = field(default_factory=dict)

    def add_data_array(self, array: ArraySpec, gdal_variant: bool) -> None:
        """Add an array; one GDAL cannot decode is noted, and with
        `gdal_variant` gets its references-only variant for GDAL."""
        array.fill_missing()
        self.arrays.append(array)
        if array.chain.gdal_decodable:
            return
        self.notes.append(f"{array.name}: {array.chain.description} is not decodable by GDAL")
        if gdal_variant:
            self.arrays.append(array.refs_only_variant())
            log.warning("%s written for GDAL: %s", refs_only_name(array.name), REFS_ONLY_NOTE.upper())


COMPLEX_INT = re.compile(r"^[<>]ci[24]$")


def storage_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype of a sample type string. Complex integers (`<ci2`,
    `<ci4`: TIFF/GDAL CInt16, CInt32), which NumPy and Zarr lack, are
    (real, imag) integer pairs."""
    if COMPLEX_INT.match(dtype):
        part = f"{dtype[0]}i{dtype[-1]}"
        return np.dtype([("real", part), ("imag", part)])
    return np.dtype(dtype)


def json_fill_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return float(value)
    return int(value)


def coordinate_array(name: str, values: np.ndarray, attrs: dict[str, Any]) -> ArraySpec:
    """A 1-D coordinate array stored inline (uncompressed little-endian)."""
    values = np.ascontiguousarray(values, dtype="<f8")
    return ArraySpec(
        name=name, dims=(name,), shape=(values.size,), chunks=(max(values.size, 1),),
        dtype="<f8", fill_value=None, chain=CodecChain(None, (), "inline coordinate"),
        attrs=attrs, url_index=np.full(1, -1, np.int32), offsets=np.zeros(1, np.int64),
        sizes=np.zeros(1, np.int64), inline=values.tobytes(),
    )


_UNITS = {"days": 86400.0, "day": 86400.0, "hours": 3600.0, "hour": 3600.0,
          "minutes": 60.0, "minute": 60.0, "seconds": 1.0, "second": 1.0}


def parse_cf_units(units: str) -> tuple[float, dt.datetime]:
    """(seconds per unit, epoch) of CF time units such as 'days since 1970-01-01'."""
    match = re.fullmatch(r"\s*(\w+)\s+since\s+(\d{4}-\d{1,2}-\d{1,2})(?:[ T](\d{1,2}:\d{2}(?::\d{2})?))?.*", units)
    if not match or match.group(1).lower() not in _UNITS:
        raise ValueError(f"unsupported CF time units {units!r} (expected '<days|hours|minutes|seconds> since YYYY-MM-DD')")
    year, month, day = (int(p) for p in match.group(2).split("-"))
    clock = [int(p) for p in (match.group(3) or "0:0:0").split(":")] + [0, 0]
    return _UNITS[match.group(1).lower()], dt.datetime(year, month, day, clock[0], clock[1], clock[2])


def times_to_cf(times: np.ndarray, units: str) -> np.ndarray:
    """datetime64 values to numbers in CF `units`."""
    seconds_per_unit, epoch = parse_cf_units(units)
    delta = (times.astype("datetime64[us]") - np.datetime64(epoch, "us")).astype(np.int64)
    return delta / 1e6 / seconds_per_unit


def time_coordinate(name: str, times: np.ndarray, units: str, calendar: str = "standard") -> ArraySpec:
    return coordinate_array(name, times_to_cf(times, units), {
        "units": units, "calendar": calendar, "standard_name": "time", "axis": "T",
        "long_name": "time",
    })


def spatial_coordinates(
    geotransform: list[float], width: int, height: int, geographic: bool, suffix: str = ""
) -> tuple[tuple[str, str], list[ArraySpec]]:
    """Pixel-centre y/x coordinate arrays of a north-up grid."""
    x = geotransform[0] + (np.arange(width) + 0.5) * geotransform[1]
    y = geotransform[3] + (np.arange(height) + 0.5) * geotransform[5]
    if geographic:
        names = (f"lat{suffix}", f"lon{suffix}")
        attrs_y = {"standard_name": "latitude", "units": "degrees_north", "axis": "Y", "long_name": "latitude"}
        attrs_x = {"standard_name": "longitude", "units": "degrees_east", "axis": "X", "long_name": "longitude"}
    else:
        names = (f"y{suffix}", f"x{suffix}")
        attrs_y = {"standard_name": "projection_y_coordinate", "axis": "Y", "long_name": "y"}
        attrs_x = {"standard_name": "projection_x_coordinate", "axis": "X", "long_name": "x"}
    return names, [coordinate_array(names[0], y, attrs_y), coordinate_array(names[1], x, attrs_x)]
