"""TIFF/COG header extraction with async-tiff: every IFD's tile table and layout.

Files are opened concurrently (bounded), with a prefetch sized to cover the
whole header in one request where possible, and retried with backoff on
transient errors. The result is one Arrow table with a row per (file, IFD):
layout scalars plus `tile_offsets`/`tile_byte_counts` list columns, so no
Python object is ever made per tile.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from chunkindex.arrays import list_column

# TIFF tag values
PLANAR_CHUNKY, PLANAR_SEPARATE = 1, 2
SUBFILE_REDUCED, SUBFILE_MASK = 1, 4
SAMPLE_FORMATS = {1: "u", 2: "i", 3: "f"}
COMPRESSION_NAMES = {
    1: "none", 5: "lzw", 6: "ojpeg", 7: "jpeg", 8: "deflate", 32946: "deflate",
    32773: "packbits", 34712: "jpeg2000", 34887: "lerc", 34925: "lzma", 50000: "zstd",
    50001: "webp", 50002: "jpegxl", 52546: "jpegxl",
}

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
    ("georef_note", pa.string()),   # rotation, GCPs, user-defined CRS, ...
    ("header_bytes", pa.int64()),
])


class TiffHeaderError(ValueError):
    """A file that cannot be indexed, with the file and the reason."""


@dataclass(frozen=True)
class ReadSettings:
    concurrency: int = 64
    prefetch: int = 65536
    retries: int = 4
    backoff_seconds: float = 0.2


def _dtype_of(ifd: Any, little_endian: bool, path: str) -> str:
    dtype, problem = _dtype_from(tuple(ifd.bits_per_sample), tuple(ifd.sample_format), little_endian)
    if problem:
        raise TiffHeaderError(f"{path}: {problem}")
    return dtype


@functools.lru_cache(maxsize=256)  # the same few layouts repeat in every file
def _dtype_from(bits_per_sample: tuple[int, ...], sample_format: tuple[Any, ...], little_endian: bool
                ) -> tuple[str, str | None]:
    """(numpy dtype string, problem): one of them is empty."""
    bits = set(bits_per_sample)
    formats = {int(f) for f in sample_format}
    if len(bits) != 1 or len(formats) != 1:
        return "", f"samples of mixed types (bits {sorted(bits)}) cannot form one array"
    nbits, fmt = bits.pop(), formats.pop()
    if fmt not in SAMPLE_FORMATS or nbits not in (8, 16, 32, 64):
        return "", f"unsupported sample type ({nbits}-bit, SampleFormat {fmt})"
    order = "|" if nbits == 8 else ("<" if little_endian else ">")
    return f"{order}{SAMPLE_FORMATS[fmt]}{nbits // 8}", None


def _int64(values: list[int]) -> np.ndarray:
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


def _crs(ifd: Any) -> tuple[str | None, str | None]:
    keys = ifd.geo_key_directory
    if keys is None:
        return None, None
    code = keys.projected_type if keys.model_type == 1 else keys.geographic_type
    if keys.model_type not in (1, 2):
        code = keys.projected_type or keys.geographic_type
    if code and code != 32767:
        return f"EPSG:{code}", None
    if keys.model_type or code:
        return None, "user-defined CRS in GeoKeys (not reproduced in the index)"
    return None, None


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


def _level_rows(tiff: Any, file_id: int, path: str, size: int) -> list[dict[str, Any]]:
    little = int(tiff.endianness) == 0
    rows = []
    first = tiff.ifds[0]
    gt, gt_note = _geotransform(first)
    crs, crs_note = _crs(first)
    nodata_text = first.gdal_nodata
    try:
        nodata = float(nodata_text) if nodata_text not in (None, "") else None
    except ValueError:
        nodata = None
    scale, offset = _gdal_scale_offset(first.gdal_metadata)
    note = "; ".join(n for n in (gt_note, crs_note) if n) or None
    for index, ifd in enumerate(tiff.ifds):
        subfile = ifd.new_subfile_type or 0
        kind = "mask" if subfile & SUBFILE_MASK else ("overview" if subfile & SUBFILE_REDUCED else "image")
        if index == 0 and kind != "image":
            kind = "image"
        if ifd.tile_width is not None and ifd.tile_offsets is not None:
            tile_width, tile_height = ifd.tile_width, ifd.tile_height
            offsets = _int64(ifd.tile_offsets)
            counts = _int64(ifd.tile_byte_counts)
        else:
            # A strip is a chunk of full width, as long as every strip is full:
            # a short last strip would decode to fewer rows than its chunk.
            strip_rows = min(ifd.rows_per_strip or ifd.image_height, ifd.image_height)
            if ifd.image_height % strip_rows:
                raise TiffHeaderError(
                    f"{path}: IFD {index} is striped with RowsPerStrip={strip_rows}, and its last strip "
                    f"holds only {ifd.image_height % strip_rows} of {strip_rows} rows, which no Zarr reader "
                    "can pad; convert it to a tiled COG (gdal_translate -of COG) to index it")
            tile_width, tile_height = ifd.image_width, strip_rows
            offsets = _int64(ifd.strip_offsets)
            counts = _int64(ifd.strip_byte_counts)
        if offsets.shape != counts.shape:
            raise TiffHeaderError(f"{path}: IFD {index} has {offsets.size} tile offsets but {counts.size} byte counts")
        ends = offsets + counts
        if ends.size and int(ends.max()) > size:
            bad = int(np.argmax(ends > size))
            raise TiffHeaderError(
                f"{path}: truncated - IFD {index} tile {bad} ends at byte {int(ends[bad])} "
                f"but the file has {size} bytes")
        samples = int(ifd.samples_per_pixel)
        planar = int(ifd.planar_configuration)
        tiles_x = math.ceil(ifd.image_width / tile_width)
        tiles_y = math.ceil(ifd.image_height / tile_height)
        expected = tiles_x * tiles_y * (samples if planar == PLANAR_SEPARATE else 1)
        if offsets.size != expected:
            raise TiffHeaderError(f"{path}: IFD {index} has {offsets.size} tiles, expected {expected}")
        lerc = ifd.lerc_parameters
        rows.append({
            "file_id": file_id, "ifd": index, "kind": kind,
            "width": ifd.image_width, "height": ifd.image_height,
            "tile_width": tile_width, "tile_height": tile_height,
            "samples": samples, "planar": planar,
            # 1-bit transparency masks are recorded but never indexed.
            "dtype": "bit1" if kind == "mask" else _dtype_of(ifd, little, path),
            "compression": int(ifd.compression), "predictor": int(ifd.predictor or 1),
            "photometric": int(ifd.photometric_interpretation),
            "jpeg_tables": ifd.jpeg_tables, "lerc_parameters": list(lerc) if lerc else None,
            "tile_offsets": offsets, "tile_byte_counts": counts,
            "nodata": nodata, "scale": scale, "offset": offset,
            "geotransform": gt, "crs": crs, "georef_note": note,
            "header_bytes": int(tiff.header_byte_size),
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
    except BaseException as exc:  # pyo3's PanicException is not an Exception
        raise TiffHeaderError(f"{path}: unreadable TIFF header ({type(exc).__name__}: {exc})") from None


def _is_transient(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}".lower()
    permanent = ("notfound", "not found", "404", "403", "forbidden", "invalid", "unsupported",
                 "not a tiff", "magic", "eof", "end of file", "out of range", "parse")
    return not any(word in text for word in permanent)


async def _open_one(store: Any, path: str, settings: ReadSettings, prefetch: int) -> Any:
    from async_tiff import TIFF

    delay = settings.backoff_seconds
    for attempt in range(1, settings.retries + 1):
        try:
            return await TIFF.open(path, store=store, prefetch=prefetch)
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except BaseException as exc:  # plain exceptions for I/O and parse errors, PanicException for others
            if attempt == settings.retries or not _is_transient(exc):
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                if "range" in reason.lower() or "eof" in reason.lower():
                    reason += " - the file ends inside its header (truncated?)"
                raise TiffHeaderError(f"{path}: cannot read the TIFF header: {reason}") from None
            await asyncio.sleep(delay * (1 + random.random()))
            delay *= 2
    raise AssertionError("unreachable")


async def read_headers_async(
    store: Any,
    paths: list[str],
    sizes: list[int],
    file_ids: list[int],
    settings: ReadSettings,
    progress: Any = None,
) -> pa.Table:
    """Read the headers of `paths` (relative to `store`) concurrently."""
    if not paths:
        return LEVELS_SCHEMA.empty_table()
    # The first file tells how large a header is; later opens fetch it at once.
    first = await _open_one(store, paths[0], settings, settings.prefetch)
    prefetch = max(settings.prefetch, _guarded(paths[0], lambda: int(first.header_byte_size)) + 1024)
    semaphore = asyncio.Semaphore(settings.concurrency)
    done = 0

    async def one(i: int) -> list[dict[str, Any]]:
        nonlocal done
        if i == 0:
            tiff = first
        else:
            async with semaphore:
                tiff = await _open_one(store, paths[i], settings, prefetch)
        rows = _guarded(paths[i], lambda: _level_rows(tiff, file_ids[i], paths[i], sizes[i]))
        done += 1
        if progress is not None:
            progress(done, len(paths))
        return rows

    results = await asyncio.gather(*(one(i) for i in range(len(paths))))
    return levels_table([row for rows in results for row in rows])


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
    settings: ReadSettings = ReadSettings(),
    progress: Any = None,
) -> pa.Table:
    """Synchronous wrapper of `read_headers_async`."""
    return asyncio.run(read_headers_async(store, paths, sizes, file_ids, settings, progress))


class TiffExtractor:
    """HeaderExtractor for COGs and tiled GeoTIFFs (async-tiff)."""

    def read_batch(self, recipe: Any, spec: Any, batch: pa.Table, progress: Any = None) -> pa.Table:
        from chunkindex.stores import open_store

        settings = ReadSettings(concurrency=recipe.headers.concurrency, prefetch=recipe.headers.prefetch,
                                retries=recipe.headers.retries)
        return read_headers(open_store(spec), batch["path"].to_pylist(), batch["size"].to_pylist(),
                            batch["file_id"].to_pylist(), settings, progress)

    def assemble(self, recipe: Any, manifest: pa.Table, headers: pa.Table) -> Any:
        from chunkindex.cog import assemble_cog

        return assemble_cog(recipe, manifest, headers)

    def source(self, recipe: Any) -> Any:
        from chunkindex.validate import TiffSource

        return TiffSource()
