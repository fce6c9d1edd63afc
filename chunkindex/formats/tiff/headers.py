"""TIFF/COG header extraction: every IFD's tile table and layout.

Two readers give the same rows: chunkindex's numpy tag reader
(`chunkindex.formats.tiff.ifd`, the default, ~10x faster) and async-tiff; the recipe
picks one (`headers.tiff_reader`) and the other re-reads each batch's first
file as a cross-check. Files are opened concurrently (bounded), with a prefetch sized to cover the
whole header in one request where possible, and retried with backoff on
transient errors. The result is one Arrow table with a row per (file, IFD):
layout scalars plus `tile_offsets`/`tile_byte_counts` list columns, so no
Python object is ever made per tile.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import random
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chunkindex.model import ChunkGrid, list_column
from chunkindex.recipe import HeaderOptions, Recipe
from chunkindex.sources.stores import StoreSpec

log = logging.getLogger(__name__)

# TIFF tag values
PLANAR_CHUNKY, PLANAR_SEPARATE = 1, 2
SUBFILE_REDUCED, SUBFILE_MASK = 1, 4
SAMPLE_FORMATS = {1: "u", 2: "i", 3: "f", 6: "c"}

LEVELS_SCHEMA = pa.schema([
    ("file_id", pa.int32()),
    ("ifd", pa.int16()),
    ("kind", pa.string()),          # "image", "overview" or "mask"
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("tile_width", pa.int32()),
    ("tile_height", pa.int32()),
    ("samples", pa.int16()),
    ("planar", pa.int8()),
    ("dtype", pa.string()),         # numpy dtype string with byte order, e.g. "<i2"
    ("compression", pa.int32()),
    ("predictor", pa.int8()),
    ("photometric", pa.int16()),
    ("jpeg_tables", pa.binary()),
    ("lerc_parameters", pa.list_(pa.int32())),
    ("tile_offsets", pa.list_(pa.int64())),
    ("tile_byte_counts", pa.list_(pa.int64())),
    ("nodata", pa.float64()),
    ("scale", pa.float64()),
    ("offset", pa.float64()),
    ("geotransform", pa.list_(pa.float64())),
    ("crs", pa.string()),           # "EPSG:<code>" when the GeoKeys name one
    ("geographic", pa.bool_()),     # the GeoKeys' model type: geographic (lat/lon) or not; null without
    ("georef_note", pa.string()),   # rotation, GCPs, user-defined CRS, ...
    ("header_bytes", pa.int64()),
    ("short_edges", pa.string()),   # "y", "x" or "y,x": edge chunks stored short along those axes
    ("bits", pa.int16()),           # bits per sample: 1, 2 or 4 for packed samples (NBITS), else 8 x itemsize
    ("color_map", pa.list_(pa.int32())),       # TIFF ColorMap: all reds, then greens, then blues (0-65535)
    ("extra_samples", pa.list_(pa.int16())),   # ExtraSamples: 0 unspecified, 1 associated, 2 unassociated alpha
    ("rpc", pa.list_(pa.float64())),           # RPCCoefficientTag (92 values, GDAL's order)
    ("gcps", pa.list_(pa.float64())),          # ModelTiepoint when it holds ground control points
    ("pixel_is_point", pa.bool_()),            # GTRasterTypeGeoKey = RasterPixelIsPoint
])


class TiffHeaderError(ValueError):
    """A file that cannot be indexed, with the file and the reason."""


@dataclass(frozen=True)
class ReadSettings:
    """How headers are fetched: the recipe's `headers` section (its schema holds the defaults)."""

    concurrency: int
    prefetch: int
    retries: int
    backoff_seconds: float = 0.2  # first retry's wait, doubled each attempt (not a recipe setting)

    @classmethod
    def from_recipe(cls, headers: HeaderOptions) -> ReadSettings:
        """The settings of a recipe's `headers` section."""
        return cls(concurrency=headers.concurrency, prefetch=headers.prefetch, retries=headers.retries)


def _dtype_of(ifd: Any, little_endian: bool, path: str) -> str:
    dtype, problem = _dtype_from(tuple(ifd.bits_per_sample), tuple(ifd.sample_format), little_endian)
    if problem:
        raise TiffHeaderError(f"{path}: {problem}")
    return dtype


@functools.lru_cache(maxsize=256)  # the same few layouts repeat in every file
def _dtype_from(bits_per_sample: tuple[int, ...], sample_format: tuple[Any, ...], little_endian: bool
                ) -> tuple[str, str | None]:
    """(numpy dtype string, problem): one of them is empty. Packed 1/2/4-bit
    unsigned samples (NBITS) unpack to bytes."""
    bits = set(bits_per_sample)
    formats = {int(f) for f in sample_format}
    if len(bits) != 1 or len(formats) != 1:
        return "", f"samples of mixed types (bits {sorted(bits)}) cannot form one array"
    nbits, fmt = bits.pop(), formats.pop()
    if fmt == 5:
        if nbits not in (32, 64):
            return "", f"unsupported complex integer samples ({nbits}-bit)"
        # No NumPy/Zarr type: the CRI index holds them (spec §2.1), Kerchunk refuses them.
        return f"{'<' if little_endian else '>'}ci{nbits // 16}", None
    if fmt == 1 and nbits in (1, 2, 4):
        return "|u1", None
    valid = (8, 16, 32, 64) if fmt != 6 else (64, 128)
    if fmt not in SAMPLE_FORMATS or nbits not in valid:
        return "", f"unsupported sample type ({nbits}-bit, SampleFormat {fmt})"
    order = "|" if nbits == 8 else ("<" if little_endian else ">")
    return f"{order}{SAMPLE_FORMATS[fmt]}{nbits // 8}", None


def _int64(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values.astype(np.int64, copy=False)
    return np.fromiter(values, dtype=np.int64, count=len(values))


def _geotransform(ifd: Any) -> tuple[list[float] | None, str | None]:
    """GDAL-style geotransform from ModelPixelScale/Tiepoint or ModelTransformation."""
    keys = ifd.geo_key_directory
    point_shift = keys is not None and keys.raster_type == 2  # PixelIsPoint
    transform = ifd.model_transformation
    if transform:
        m = list(transform)
        gt = [m[3], m[0], m[1], m[7], m[4], m[5]]
        note = "rotated or sheared geotransform" if (m[1] or m[4]) else None
    else:
        scale, tie = ifd.model_pixel_scale, ifd.model_tiepoint
        if not tie:
            return None, None
        if len(tie) > 6 or not scale:
            return None, f"georeferenced by {len(tie) // 6} ground control points"
        i, j, _, x, y, _ = tie[:6]
        gt = [x - i * scale[0], scale[0], 0.0, y + j * scale[1], 0.0, -scale[1]]
        note = None
    if point_shift:
        gt[0] -= 0.5 * gt[1] + 0.5 * gt[2]
        gt[3] -= 0.5 * gt[4] + 0.5 * gt[5]
    return gt, note


def _crs(ifd: Any) -> tuple[str | None, str | None, bool | None]:
    """(CRS "EPSG:<code>", a note on what is not reproduced, geographic?) from the GeoKeys.

    Geographic: GTModelTypeGeoKey says 2 (or, without it, only a geographic
    CRS code is given) - read from the file, so no CRS database is needed.
    """
    keys = ifd.geo_key_directory
    if keys is None:
        return None, None, None
    code = keys.projected_type if keys.model_type == 1 else keys.geographic_type
    if keys.model_type not in (1, 2):
        code = keys.projected_type or keys.geographic_type
    geographic = keys.model_type == 2 if keys.model_type in (1, 2) else (
        None if not code else not keys.projected_type)
    if code and code != 32767:
        return f"EPSG:{code}", None, geographic
    if keys.model_type or code:
        return None, "user-defined CRS in GeoKeys (not reproduced in the index)", geographic
    return None, None, geographic


@functools.lru_cache(maxsize=1024)  # archives repeat the same GDAL metadata in every file
def _gdal_scale_offset(xml: str | None) -> tuple[float | None, float | None]:
    if not xml:
        return None, None
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, None
    values: dict[str, float] = {}
    for item in root.iter("Item"):
        role = item.get("role")
        if role in ("scale", "offset") and item.get("sample", "0") == "0" and item.text:
            values[role] = float(item.text)
    return values.get("scale"), values.get("offset")


def chunk_table_attrs(ifd: Any) -> tuple[str, str]:
    """The IFD attributes holding its chunk table: tiles, else strips."""
    if ifd.tile_width is not None and ifd.tile_offsets is not None:
        return "tile_offsets", "tile_byte_counts"
    return "strip_offsets", "strip_byte_counts"


def check_within(path: str, index: int, offsets: np.ndarray, counts: np.ndarray, size: int) -> None:
    """Refuse a tile that ends past the end of the file (a truncated file)."""
    ends = offsets + counts
    if ends.size and int(ends.max()) > size:
        bad = int(np.argmax(ends > size))
        raise TiffHeaderError(
            f"{path}: truncated - IFD {index} tile {bad} ends at byte {int(ends[bad])} "
            f"but the file has {size} bytes")


def _int_list(values: Any) -> list[int] | None:
    """A tag's integers as a list (async-tiff gives buffers and enums)."""
    if values is None:
        return None
    return [int(v) for v in np.asarray(values).ravel().tolist()] if not isinstance(values, list | tuple) \
        else [int(v) for v in values]


def _color_map(values: Any) -> list[int] | None:
    """ColorMap in TIFF order (all reds, greens, then blues); async-tiff
    gives it as (red, green, blue) triplets."""
    if values is None or isinstance(values, list | tuple):
        return _int_list(values)
    return np.asarray(values).reshape(-1, 3).T.ravel().astype(int).tolist()


def _rpc(ifd: Any) -> list[float] | None:
    """RPCCoefficientTag (50844) from either reader."""
    values = getattr(ifd, "rpc_coefficients", None)
    if values is None and hasattr(ifd, "other_tags"):
        values = ifd.other_tags.get(50844)
    return [float(v) for v in values] if values else None


def _short_edges(ifd: Any, tiled: bool, tile_width: int, tile_height: int, samples: int, dtype: str,
                 counts: np.ndarray) -> str | None:
    """The axes along which this IFD's edge chunks are stored short, if any.

    A striped image whose height is not a multiple of RowsPerStrip has a
    short last strip (libtiff writes only the remaining rows). Tiles are
    normally written full; an uncompressed tile shows it is short by its
    byte count (compressed short tiles are found when decoded).
    """
    height, width = ifd.image_height, ifd.image_width
    if not tiled:
        return "y" if height % tile_height else None
    if int(ifd.compression) != 1 or dtype == "bit1":
        return None
    bits = int(next(iter(ifd.bits_per_sample)))  # rows of packed (NBITS) samples end on a byte boundary
    full = tile_height * math.ceil(tile_width * samples * bits / 8)
    across, down = math.ceil(width / tile_width), math.ceil(height / tile_height)
    grid = counts.reshape(-1, down, across)
    # The corner tile is short along both when either is: judge each axis away from it.
    last_row = grid[:, -1, :-1] if across > 1 else grid[:, -1, :]
    last_column = grid[:, :-1, -1] if down > 1 else grid[:, :0, -1]
    axes = []
    if height % tile_height and ((last_row > 0) & (last_row < full)).any():
        axes.append("y")
    if width % tile_width and ((last_column > 0) & (last_column < full)).any():
        axes.append("x")
    return ",".join(axes) or None


def _level_rows(tiff: Any, file_id: int, path: str, size: int) -> list[dict[str, Any]]:
    little = int(tiff.endianness) == 0
    rows = []
    first = tiff.ifds[0]
    gt, gt_note = _geotransform(first)
    crs, crs_note, geographic = _crs(first)
    nodata_text = first.gdal_nodata
    try:
        nodata = float(nodata_text) if nodata_text not in (None, "") else None
    except ValueError:
        nodata = None
    scale, offset = _gdal_scale_offset(first.gdal_metadata)
    note = "; ".join(n for n in (gt_note, crs_note) if n) or None
    tiepoints = list(first.model_tiepoint or ())
    keys = first.geo_key_directory
    extras = {"rpc": _rpc(first), "gcps": tiepoints if len(tiepoints) > 6 else None,
              "pixel_is_point": bool(keys is not None and keys.raster_type == 2)}
    for index, ifd in enumerate(tiff.ifds):
        extras = {**extras, "color_map": _color_map(getattr(ifd, "colormap", None)),
                  "extra_samples": _int_list(ifd.extra_samples)}
        subfile = ifd.new_subfile_type or 0
        kind = "mask" if subfile & SUBFILE_MASK else ("overview" if subfile & SUBFILE_REDUCED else "image")
        if index == 0 and kind != "image":
            kind = "image"
        offsets_attr, counts_attr = chunk_table_attrs(ifd)
        if getattr(ifd, offsets_attr) is None or getattr(ifd, counts_attr) is None:
            raise TiffHeaderError(f"{path}: IFD {index} has no TileOffsets/TileByteCounts or "
                                  "StripOffsets/StripByteCounts, so its data cannot be located")
        offsets = _int64(getattr(ifd, offsets_attr))
        counts = _int64(getattr(ifd, counts_attr))
        if offsets_attr == "tile_offsets":
            tile_width, tile_height = ifd.tile_width, ifd.tile_height
        else:
            # A strip is a chunk of full width; a short last strip holds only
            # the image's remaining rows (a short edge chunk, see short_edges).
            strip_rows = min(ifd.rows_per_strip or ifd.image_height, ifd.image_height)
            tile_width, tile_height = ifd.image_width, strip_rows
        if offsets.shape != counts.shape:
            raise TiffHeaderError(f"{path}: IFD {index} has {offsets.size} tile offsets but {counts.size} byte counts")
        check_within(path, index, offsets, counts, size)
        samples = int(ifd.samples_per_pixel)
        planar = int(ifd.planar_configuration)
        tiles = ChunkGrid.of((ifd.image_height, ifd.image_width), (tile_height, tile_width)).n_chunks
        expected = tiles * (samples if planar == PLANAR_SEPARATE else 1)
        if offsets.size != expected:
            raise TiffHeaderError(f"{path}: IFD {index} has {offsets.size} tiles, expected {expected}")
        lerc = ifd.lerc_parameters
        dtype = "bit1" if kind == "mask" else _dtype_of(ifd, little, path)
        rows.append({
            "file_id": file_id, "ifd": index, "kind": kind,
            "width": ifd.image_width, "height": ifd.image_height,
            "tile_width": tile_width, "tile_height": tile_height,
            "samples": samples, "planar": planar,
            # 1-bit transparency masks are recorded but never indexed.
            "dtype": dtype,
            "compression": int(ifd.compression), "predictor": int(ifd.predictor or 1),
            "photometric": int(ifd.photometric_interpretation),
            "jpeg_tables": ifd.jpeg_tables, "lerc_parameters": list(lerc) if lerc else None,
            "tile_offsets": offsets, "tile_byte_counts": counts,
            "nodata": nodata, "scale": scale, "offset": offset,
            "geotransform": gt, "crs": crs, "geographic": geographic, "georef_note": note,
            "header_bytes": int(tiff.header_byte_size),
            "short_edges": _short_edges(ifd, offsets_attr == "tile_offsets", tile_width, tile_height,
                                        samples if planar == PLANAR_CHUNKY else 1, dtype, counts),
            "bits": 1 if kind == "mask" else int(ifd.bits_per_sample[0]),
            **extras,
        })
    return rows


def _guarded(path: str, read: Any) -> Any:
    """Run `read`, turning async-tiff's Rust panics (BaseException) into a clear error."""
    try:
        return read()
    except TiffHeaderError:
        raise
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as exc:  # noqa: BLE001  pyo3's PanicException is not an Exception
        raise TiffHeaderError(f"{path}: unreadable TIFF header ({type(exc).__name__}: {exc})") from None


@functools.cache
def _error_types() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(permanent, transient) error types of a header request through obstore or async-tiff."""
    import obstore.exceptions as oe

    permanent = (FileNotFoundError, PermissionError, IsADirectoryError, ValueError, TypeError, oe.NotFoundError,
                 oe.PermissionDeniedError, oe.UnauthenticatedError, oe.NotSupportedError, oe.InvalidPathError,
                 oe.UnknownConfigurationKeyError, oe.PreconditionError)
    # obstore's GenericError carries network failures (after its own HTTP retries).
    return permanent, (ConnectionError, TimeoutError, oe.GenericError)


def is_transient(exc: BaseException, remote: bool, opaque: bool = False) -> bool:
    """Whether a failed header request may succeed when repeated, from its type and the store.

    A local file reads the same the second time; a remote request is retried
    on connection, timeout and store errors, never on a missing object,
    refused access or bytes that do not parse. `opaque`: the request wraps
    store errors in a type of its own (async-tiff's exception, not exported),
    so any Exception not known to be permanent is retried; a Rust panic
    (BaseException) never is.

    Example:
        >>> is_transient(TimeoutError(), remote=True), is_transient(FileNotFoundError(), remote=True)
        (True, False)
        >>> is_transient(TimeoutError(), remote=False)
        False
    """
    permanent, transient = _error_types()
    if not remote or isinstance(exc, permanent):
        return False
    return isinstance(exc, transient) or (opaque and isinstance(exc, Exception))


def _changed_since_listing(exc: BaseException) -> bool:
    """An If-Match read refused (HTTP 412): the object is not the listed one."""
    from obstore.exceptions import PreconditionError

    return isinstance(exc, PreconditionError)


async def _with_retries(path: str, settings: ReadSettings, request: Any, remote: bool,
                        opaque: bool = False) -> Any:
    """Await `request()`, retrying transient errors (`is_transient`) with exponential backoff."""
    delay = settings.backoff_seconds
    for attempt in range(1, settings.retries + 1):
        try:
            return await request()
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except TiffHeaderError:
            raise
        except BaseException as exc:  # noqa: BLE001  plain exceptions for I/O and parse errors, PanicException for others
            if attempt == settings.retries or not is_transient(exc, remote, opaque):
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                if _changed_since_listing(exc):
                    raise TiffHeaderError(f"{path}: the object changed since it was listed (its ETag no longer "
                                          "matches the listing's): list again (--forcerun list_sources)") from None
                if "range" in reason.lower() or "eof" in reason.lower():
                    reason += " - the file ends inside its header (truncated?)"
                if attempt > 1:
                    reason += f" (after {attempt} attempts)"
                raise TiffHeaderError(f"{path}: cannot read the TIFF header: {reason}") from None
            await asyncio.sleep(delay * (1 + random.random()))
            delay *= 2
    raise AssertionError("unreachable")


@dataclass
class _Parsed:
    """A header parsed in full (numpy or async-tiff), and its template index if it became one."""

    header: Any
    template: int | None = None
    short_edges: dict[int, str] = field(default_factory=dict)  # IFD -> axes of short compressed tiles


@dataclass
class _Hit:
    """A header identical to a template's but for its offset arrays."""

    template: int
    arrays: dict[tuple[int, str], np.ndarray]


def _header_reading(path: str, size: int, prefetch: int, templates: Any) -> Generator[tuple[int, int], Any, Any]:
    """Yields the (start, length) ranges to fetch and receives their bytes;
    returns a `_Hit` or `_Parsed`. One routine for local and remote reads."""
    from chunkindex.formats.tiff.ifd import (
        HeaderBytes,
        HeaderFormatError,
        MissingBytes,
        parse_header,
    )

    data = HeaderBytes(size)
    start, length = 0, min(prefetch, size)
    for _ in range(256):  # every round fetches at least one missing tag value
        if length > 0:
            got = yield start, length
            if len(got) != length:
                raise TiffHeaderError(f"{path}: {len(got)} bytes at {start} where {length} were expected; "
                                      f"the file is shorter than the {size} bytes listed (changed since listing?)")
            data.add(start, got)
        if start == 0 and (hit := templates.match(data)) is not None:
            return _Hit(*hit)
        try:
            header = parse_header(data)
        except MissingBytes as missing:
            start = missing.start
            length = min(max(missing.length, prefetch), size - start)
            continue
        except HeaderFormatError as exc:
            raise TiffHeaderError(f"{path}: cannot read the TIFF header: {exc}") from None
        return _Parsed(header, templates.add(header, data))
    raise TiffHeaderError(f"{path}: the header is scattered over more than 256 places in the file")


def _read_local(root: str, path: str, size: int, prefetch: int, templates: Any) -> Any:
    """Read one header from a local file with plain `pread` calls.

    obstore's LocalStore costs ~0.1 ms per request (its async machinery), ten
    times the read itself, so local headers skip it.
    """
    reading = _header_reading(path, size, prefetch, templates)
    try:
        fd = os.open(os.path.join(root, path), os.O_RDONLY)
    except OSError as exc:
        raise TiffHeaderError(f"{path}: cannot read the TIFF header: {exc.strerror}") from None
    try:
        start, length = next(reading)
        while True:
            start, length = reading.send(os.pread(fd, length, start))
    except StopIteration as stop:
        return stop.value
    finally:
        os.close(fd)


async def _get_range(store: Any, path: str, start: int, length: int, etag: str | None) -> Any:
    """Bytes `start`..`start + length` of an object; with `etag`, only of the
    object the listing saw (If-Match: a changed object fails, never mixes)."""
    import obstore

    if etag is None:
        return await obstore.get_range_async(store, path, start=start, length=length)
    result = await obstore.get_async(store, path, options={"range": (start, start + length), "if_match": etag})
    return await result.bytes_async()


async def _read_remote(store: Any, path: str, size: int, prefetch: int, templates: Any,
                       settings: ReadSettings, etag: str | None = None) -> Any:
    """Read one header through obstore (S3, HTTP, ...), with retries."""
    reading = _header_reading(path, size, prefetch, templates)
    try:
        start, length = next(reading)
        while True:
            got = await _with_retries(path, settings, functools.partial(_get_range, store, path, start, length, etag),
                                      remote=True)
            start, length = reading.send(got)
    except StopIteration as stop:
        return stop.value


async def _read_async_tiff(store: Any, path: str, prefetch: int, settings: ReadSettings) -> _Parsed:
    from async_tiff import TIFF

    return _Parsed(await _with_retries(path, settings, lambda: TIFF.open(path, store=store, prefetch=prefetch),
                                       remote=local_root(store) is None, opaque=True))


def local_root(store: Any) -> str | None:
    """The folder of a local obstore store, else None."""
    prefix = getattr(store, "prefix", None)
    if type(store).__name__ == "LocalStore" and prefix is not None:
        return str(prefix)
    return None


async def read_headers_async(
    store: Any,
    paths: list[str],
    sizes: list[int],
    file_ids: list[int],
    settings: ReadSettings,
    progress: Any = None,
    reader: str = "numpy",
    etags: list[str | None] | None = None,
) -> pa.Table:
    """Read the headers of `paths` (relative to `store`) concurrently.

    `reader` is "numpy" (chunkindex.formats.tiff.ifd, the fast path) or "async-tiff".
    Files whose header matches an earlier one but for the tile tables (an
    archive of daily files) reuse its parse: only their tile tables are read.
    With `etags` (the listing's), remote reads are conditional on them: an
    object replaced since the listing is an error, not a silent mix.
    """
    from chunkindex.formats.tiff.ifd import HeaderTemplates

    if not paths:
        return LEVELS_SCHEMA.empty_table()
    templates = HeaderTemplates()
    root = local_root(store) if reader == "numpy" else None

    async def read(i: int, prefetch: int) -> Any:
        if reader == "async-tiff":
            return await _read_async_tiff(store, paths[i], prefetch, settings)
        if root is not None:
            return _read_local(root, paths[i], sizes[i], prefetch, templates)
        return await _read_remote(store, paths[i], sizes[i], prefetch, templates, settings,
                                  etags[i] if etags else None)

    # The first file tells how large a header is; later reads fetch it at once.
    first = await read(0, settings.prefetch)
    prefetch = max(settings.prefetch, _guarded(paths[0], lambda: int(first.header.header_byte_size)) + 1024)
    results: list[Any] = [first] + [None] * (len(paths) - 1)
    if root is not None:  # local reads are cheap system calls: no event loop round trips
        for i in range(1, len(paths)):
            results[i] = _read_local(root, paths[i], sizes[i], prefetch, templates)
            if progress is not None:
                progress(i + 1, len(paths))
    else:
        semaphore = asyncio.Semaphore(settings.concurrency)
        done = 1

        async def one(i: int) -> None:
            nonlocal done
            async with semaphore:
                results[i] = await read(i, prefetch)
            done += 1
            if progress is not None:
                progress(done, len(paths))

        await asyncio.gather(*(one(i) for i in range(1, len(paths))))
    for i, result in enumerate(results):  # one probe per parsed header, not per file of a daily archive
        if isinstance(result, _Parsed):
            if root is not None:
                result.short_edges = _probe_short_tiles(result.header, functools.partial(_pread, root, paths[i]))
            else:
                blobs = await _fetch_probes(store, paths[i], result.header, settings)
                result.short_edges = _probe_short_tiles(result.header, lambda o, n, b=blobs: b[(o, n)])
    return _levels_of(results, paths, sizes, file_ids, templates)


# Decoders of the general-purpose TIFF codecs, to measure a decoded edge tile.
# Image codecs (JPEG, WebP, LERC, ...) carry their own size and are written full.
def _probe_decoders() -> dict[int, Any]:
    import zlib

    import imagecodecs

    return {8: zlib.decompress, 32946: zlib.decompress, 5: imagecodecs.lzw_decode,
            50000: imagecodecs.zstd_decode, 34925: imagecodecs.lzma_decode, 32773: imagecodecs.packbits_decode}


def _probe_tiles(header: Any) -> list[tuple[int, str, int, int, int]]:
    """(IFD, axis, offset, size, full size) of the edge tiles to decode: the
    first tile of the last row and the last tile of the first row of each
    compressed tiled IFD whose tiles overhang the image."""
    probes = []
    for index, ifd in enumerate(header.ifds):
        compression = int(ifd.compression)
        if ifd.tile_width is None or ifd.tile_offsets is None or compression not in _PROBED:
            continue
        tw, th, width, height = ifd.tile_width, ifd.tile_height, ifd.image_width, ifd.image_height
        across, down = math.ceil(width / tw), math.ceil(height / th)
        chunky = int(ifd.planar_configuration) == PLANAR_CHUNKY
        samples = int(ifd.samples_per_pixel) if chunky else 1
        bits = int(next(iter(ifd.bits_per_sample)))
        full = th * math.ceil(tw * samples * bits / 8)
        offsets, counts = np.asarray(ifd.tile_offsets), np.asarray(ifd.tile_byte_counts)
        for axis, k in (("y", (down - 1) * across), ("x", across - 1)):
            overhang = height % th if axis == "y" else width % tw
            if overhang and counts[k] > 0:
                probes.append((index, axis, int(offsets[k]), int(counts[k]), full))
    return probes


_PROBED = frozenset((8, 32946, 5, 50000, 34925, 32773))


def _probe_short_tiles(header: Any, read: Any) -> dict[int, str]:
    """IFD -> axes ("y", "x" or "y,x") along which compressed edge tiles decode short."""
    found: dict[int, list[str]] = {}
    decoders = None
    for index, _axis, offset, size, full in _probe_tiles(header):
        decoders = decoders or _probe_decoders()
        try:
            length = len(decoders[int(header.ifds[index].compression)](read(offset, size)))
        except Exception as exc:  # noqa: BLE001  an undecodable tile is the validator's to report
            log.debug("edge tile at %d (IFD %d) does not decode: %s", offset, index, exc)
            continue
        if length < full:
            # Whole rows missing: short along y; rows of fewer samples: along x.
            row_bytes = full // int(header.ifds[index].tile_height)
            short_axis = "y" if length % row_bytes == 0 else "x"
            axes = found.setdefault(index, [])
            if short_axis not in axes:
                axes.append(short_axis)
    return {index: ",".join(sorted(axes, reverse=True)) for index, axes in found.items()}


def _pread(root: str, path: str, offset: int, size: int) -> bytes:
    fd = os.open(os.path.join(root, path), os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


async def _fetch_probes(store: Any, path: str, header: Any, settings: ReadSettings) -> dict[tuple[int, int], bytes]:
    """The edge tiles `_probe_short_tiles` will decode, fetched from a remote store."""
    import obstore

    wanted = sorted({(offset, size) for _, _, offset, size, _ in _probe_tiles(header)})
    got = await asyncio.gather(*(_with_retries(path, settings, functools.partial(
        obstore.get_range_async, store, path, start=offset, length=size), remote=True) for offset, size in wanted))
    return {key: bytes(data) for key, data in zip(wanted, got)}





def _levels_of(results: list[Any], paths: list[str], sizes: list[int], file_ids: list[int],
               templates: Any) -> pa.Table:
    """The levels table of a batch: rows of fully parsed files, and for the
    files matching a template, its rows with their own tile tables.

    Tile tables stay in the file's own integer type until one concatenation
    per column; the truncation check and header sizes are then vectorised.
    """
    parsed_rows: list[dict[str, Any]] = []
    first_rows: dict[int, tuple[int, int]] = {}  # file -> (first row in parsed_rows, rows)
    template_rows: dict[int, tuple[int, list[tuple[str, str]]]] = {}  # -> (first row, chunk table attrs)
    # Parsed files first: with concurrent reads, a template may come from a
    # file later in the batch than files matching it.
    for i, result in enumerate(results):
        if isinstance(result, _Parsed):
            rows = _guarded(paths[i], functools.partial(_level_rows, result.header, file_ids[i], paths[i], sizes[i]))
            for row in rows:
                if row["ifd"] in result.short_edges:
                    row["short_edges"] = result.short_edges[row["ifd"]]
            first_rows[i] = (len(parsed_rows), len(rows))
            if result.template is not None:
                template_rows[result.template] = (len(parsed_rows), [chunk_table_attrs(ifd) for ifd in result.header.ifds])
            parsed_rows.extend(rows)
    take: list[np.ndarray] = []
    offsets: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    rows_per_file = np.zeros(len(results), dtype=np.int64)
    for i, result in enumerate(results):
        if isinstance(result, _Parsed):
            first_row, count = first_rows[i]
            offsets.extend(r["tile_offsets"] for r in parsed_rows[first_row:first_row + count])
            counts.extend(r["tile_byte_counts"] for r in parsed_rows[first_row:first_row + count])
        else:
            first_row, attrs = template_rows[result.template]
            offsets.extend(result.arrays[(index, attr)] for index, (attr, _) in enumerate(attrs))
            counts.extend(result.arrays[(index, attr)] for index, (_, attr) in enumerate(attrs))
            count = len(attrs)
        take.append(np.arange(first_row, first_row + count))
        rows_per_file[i] = count
    tile_offsets, tile_byte_counts = list_column(offsets), list_column(counts)
    header_bytes = _check_tile_ends(tile_offsets, tile_byte_counts, rows_per_file, paths, sizes, file_ids)
    per_file = ("file_id", "tile_offsets", "tile_byte_counts", "header_bytes")
    table = levels_table(parsed_rows).drop_columns(list(per_file)).take(pa.array(np.concatenate(take)))
    columns = {
        "file_id": pa.array(np.repeat(np.asarray(file_ids, dtype=np.int32), rows_per_file)),
        "tile_offsets": tile_offsets,
        "tile_byte_counts": tile_byte_counts,
        "header_bytes": pa.array(np.repeat(header_bytes, rows_per_file)),
    }
    for name in per_file:
        table = table.append_column(LEVELS_SCHEMA.field(name), columns[name])
    return table.select(LEVELS_SCHEMA.names)


def _check_tile_ends(tile_offsets: pa.ListArray, tile_byte_counts: pa.ListArray, rows_per_file: np.ndarray,
                     paths: list[str], sizes: list[int], file_ids: list[int]) -> np.ndarray:
    """Refuse tiles ending past their file's end; returns each file's header size
    (its first tile's offset, as async-tiff's `header_byte_size`).

    Per-file maxima and minima by `reduceat` over the flat columns, a few
    million values at a time so no temporary is as large as the columns.
    """
    starts = tile_offsets.values.to_numpy()
    byte_counts = tile_byte_counts.values.to_numpy()
    row_bounds = tile_offsets.offsets.to_numpy()
    file_rows = np.concatenate([[0], np.cumsum(rows_per_file)])
    file_bounds = row_bounds[file_rows].astype(np.int64)
    sizes_array = np.asarray(sizes, dtype=np.int64)
    header_bytes = sizes_array.copy()
    nonempty = np.flatnonzero(np.diff(file_bounds) > 0)
    if nonempty.size == 0:
        return header_bytes
    at = file_bounds[nonempty]
    largest_end = np.empty(nonempty.size, dtype=np.int64)
    block, first = 1 << 22, 0
    while first < nonempty.size:
        last = max(first + 1, int(np.searchsorted(at, at[first] + block, side="right")) - 1)
        last = min(nonempty.size, last)
        end = file_bounds[nonempty[last - 1] + 1]
        ends = starts[at[first]:end] + byte_counts[at[first]:end]
        largest_end[first:last] = np.maximum.reduceat(ends, at[first:last] - at[first])
        first = last
    for k in np.flatnonzero(largest_end > sizes_array[nonempty]):
        i = int(nonempty[k])
        for row in range(int(file_rows[i]), int(file_rows[i + 1])):
            span = slice(row_bounds[row], row_bounds[row + 1])
            check_within(paths[i], row - int(file_rows[i]), starts[span], byte_counts[span], sizes[i])
    lowest = np.minimum.reduceat(starts, at)
    for k in np.flatnonzero(lowest == 0):  # sparse tiles have offset 0: the smallest non-zero one
        i = int(nonempty[k])
        values = starts[file_bounds[i]:file_bounds[i + 1]]
        lowest[k] = values[values > 0].min() if (values > 0).any() else sizes[i]
    header_bytes[nonempty] = np.minimum(lowest, sizes_array[nonempty])
    return header_bytes


def levels_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Arrow table from level rows; tile columns built from numpy in one go."""
    columns: dict[str, Any] = {}
    for name in LEVELS_SCHEMA.names:
        if name in ("tile_offsets", "tile_byte_counts"):
            columns[name] = list_column([r[name] for r in rows])
        else:
            columns[name] = pa.array([r[name] for r in rows], LEVELS_SCHEMA.field(name).type)
    return pa.table(columns, schema=LEVELS_SCHEMA)


def read_headers(
    store: Any,
    paths: list[str],
    sizes: list[int],
    file_ids: list[int],
    settings: ReadSettings,
    progress: Any = None,
    reader: str = "numpy",
    etags: list[str | None] | None = None,
) -> pa.Table:
    """Synchronous wrapper of `read_headers_async`."""
    return asyncio.run(read_headers_async(store, paths, sizes, file_ids, settings, progress, reader, etags))


def _same_values(a: Any, b: Any) -> bool:
    """Equality that counts NaN equal to NaN (a nodata of NaN is common)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_values(x, y) for x, y in zip(a, b))
    return a == b


def cross_check_first(store: Any, paths: list[str], sizes: list[int], file_ids: list[int],
                      table: pa.Table, settings: ReadSettings, reader: str) -> str | None:
    """Re-read a batch's first file with the other reader; a difference is an error.

    Returns a note when the other reader cannot read the file at all (async-tiff
    panics on IFDs whose every strip is empty, which the numpy reader indexes).
    """
    other = "async-tiff" if reader == "numpy" else "numpy"
    try:
        again = read_headers(store, paths[:1], sizes[:1], file_ids[:1], settings, reader=other)
    except TiffHeaderError as exc:
        return f"cross-check skipped: the {other} reader cannot read {exc}"
    mine = table.filter(pc.equal(table["file_id"], file_ids[0]))
    for name in LEVELS_SCHEMA.names:
        if name == "header_bytes" or mine[name].equals(again[name]):
            continue
        if not _same_values(mine[name].to_pylist(), again[name].to_pylist()):
            raise TiffHeaderError(
                f"{paths[0]}: the {reader} and {other} TIFF readers disagree on {name!r} "
                f"({mine[name].to_pylist()[:4]} vs {again[name].to_pylist()[:4]}); please report this file")
    return None


def read_batch(recipe: Recipe, spec: StoreSpec, batch: pa.Table,
               progress: Callable[[int, int], None] | None = None) -> pa.Table:
    """The levels table of a batch of the manifest, with the recipe's reader
    (`headers.tiff_reader`); the batch's first file is re-read with the other."""
    from chunkindex.sources.stores import open_store

    settings = ReadSettings.from_recipe(recipe.headers)
    store = open_store(spec)
    paths, sizes, file_ids = (batch["path"].to_pylist(), batch["size"].to_pylist(),
                              batch["file_id"].to_pylist())
    reader = recipe.headers.tiff_reader
    etags = batch["etag"].to_pylist() if "etag" in batch.column_names else None
    table = read_headers(store, paths, sizes, file_ids, settings, progress, reader=reader, etags=etags)
    note = cross_check_first(store, paths, sizes, file_ids, table, settings, reader) if paths else None
    if note:
        log.warning(note)
    return table.replace_schema_metadata({**(table.schema.metadata or {}),
                                          b"chunkindex.tiff_reader": reader.encode()})
