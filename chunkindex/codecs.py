"""Codec chains: from a source chunk's encoding to Zarr v2 compressor + filters.

Honesty rules: the true chain is always recorded (ids that zarr-python with
numcodecs + imagecodecs decode); whether GDAL's Zarr driver can decode it is
stated per array; nothing is ever dropped silently.

GDAL's Zarr v2 decoders: compressors zlib, gzip, zstd, lz4, lzma, blosc;
filters shuffle, delta (flattened), quantize, fixedscaleoffset.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

GDAL_COMPRESSORS = {"zlib", "gzip", "zstd", "lz4", "lzma", "blosc"}
GDAL_FILTERS = {"shuffle", "delta", "quantize", "fixedscaleoffset"}
REFS_ONLY_NOTE = "references only: GDAL pixel reads are not valid"


class UnsupportedCodec(ValueError):
    """A source encoding no reader can decode through references."""


@dataclass(frozen=True)
class CodecChain:
    """Zarr v2 `compressor` and `filters` of an array, and who can decode them."""

    compressor: dict[str, Any] | None
    filters: tuple[dict[str, Any], ...] = ()
    description: str = ""
    python_decodable: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gdal_decodable(self) -> bool:
        compressor_ok = self.compressor is None or self.compressor["id"] in GDAL_COMPRESSORS
        return compressor_ok and all(f["id"] in GDAL_FILTERS for f in self.filters)

    @property
    def readers(self) -> list[str]:
        readers = []
        if self.gdal_decodable:
            readers.append("gdal")
        if self.python_decodable:
            readers.append("zarr-python+imagecodecs")
        return readers

    def zarray_filters(self) -> list[dict[str, Any]] | None:
        return list(self.filters) or None

    def as_attribute(self) -> dict[str, Any]:
        return {"compressor": self.compressor, "filters": list(self.filters),
                "description": self.description, "readers": self.readers,
                "notes": list(self.notes)}

    def gdal_openable(self) -> CodecChain:
        """The nearest chain GDAL will open: the GDAL-known compressor (if any)
        and no filters. Pixels read through it are not valid unless the chain
        already was GDAL-decodable."""
        compressor = self.compressor if (self.compressor and self.compressor["id"] in GDAL_COMPRESSORS) else None
        return CodecChain(compressor, (), self.description + " (" + REFS_ONLY_NOTE + ")",
                          python_decodable=False)


def tiff_chain(
    compression: int,
    predictor: int,
    dtype: str,
    chunk_shape: tuple[int, ...],
    x_axis: int,
    jpeg_tables: bytes | None = None,
    photometric: int | None = None,
    lerc_parameters: list[int] | None = None,
    where: str = "",
) -> CodecChain:
    """The Zarr v2 chain decoding one TIFF tile into a chunk of `chunk_shape`.

    Args:
        compression: TIFF Compression tag value.
        predictor: TIFF Predictor (1 none, 2 horizontal, 3 floating point).
        dtype: numpy dtype string of the samples, with byte order.
        chunk_shape: the Zarr chunk shape the tile decodes into.
        x_axis: the axis of `chunk_shape` along which the predictor runs.
        jpeg_tables: JPEGTables tag, for JPEG tiles.
        photometric: PhotometricInterpretation (YCbCr JPEG decodes to RGB).
        lerc_parameters: LercParameters tag (version, additional compression).
        where: file name for error messages.

    Raises:
        UnsupportedCodec: when no reader decodes the encoding.
    """
    filters: list[dict[str, Any]] = []
    notes: list[str] = []
    python_ok = True
    name = {1: "none", 5: "LZW", 7: "JPEG", 8: "DEFLATE", 32946: "DEFLATE", 32773: "PackBits",
            34887: "LERC", 34925: "LZMA", 50000: "ZSTD", 50001: "WebP", 34712: "JPEG 2000",
            50002: "JPEG XL", 52546: "JPEG XL"}.get(compression, f"compression {compression}")
    compressor: dict[str, Any] | None
    if compression == 1:
        compressor = None
    elif compression in (8, 32946):
        compressor = {"id": "zlib", "level": 1}
    elif compression == 50000:
        compressor = {"id": "zstd", "level": 1}
    elif compression == 34925:
        compressor = {"id": "lzma", "format": 1, "check": -1, "preset": None, "filters": None}
    elif compression == 5:
        compressor = {"id": "imagecodecs_lzw"}
    elif compression == 32773:
        compressor = {"id": "imagecodecs_packbits"}
    elif compression == 50001:
        compressor = {"id": "imagecodecs_webp"}
    elif compression in (50002, 52546):
        compressor = {"id": "imagecodecs_jpegxl"}
    elif compression == 34712:
        compressor = {"id": "imagecodecs_jpeg2k"}
    elif compression == 34887:
        extra = (lerc_parameters or [4, 0])[1] if lerc_parameters and len(lerc_parameters) > 1 else 0
        compressor = {0: None, 1: {"id": "zlib", "level": 1}, 2: {"id": "zstd", "level": 1}}.get(extra)
        if extra not in (0, 1, 2):
            raise UnsupportedCodec(f"{where}: LERC with additional compression {extra} is not supported")
        filters.append({"id": "imagecodecs_lerc"})
    elif compression == 7:
        # JPEGTables are bytes, which a JSON .zarray cannot carry for imagecodecs'
        # Jpeg codec: record the chain, decode with no reader.
        compressor = {"id": "imagecodecs_jpeg"}
        python_ok = False
        notes.append("JPEG tiles with shared JPEGTables"
                     + (" in YCbCr" if photometric == 6 else "")
                     + ": references are exact, but no reader here decodes them from references")
        if jpeg_tables:
            notes.append("JPEGTables (base64): " + base64.b64encode(jpeg_tables).decode())
    else:
        raise UnsupportedCodec(f"{where}: TIFF {name} tiles cannot be decoded through references")

    if predictor == 2:
        filters.insert(0, {"id": "imagecodecs_delta", "shape": list(chunk_shape), "dtype": dtype,
                           "axis": x_axis, "dist": 1})
    elif predictor == 3:
        filters.insert(0, {"id": "imagecodecs_floatpred", "shape": list(chunk_shape), "dtype": dtype,
                           "axis": x_axis, "dist": 1})
    elif predictor not in (0, 1):
        raise UnsupportedCodec(f"{where}: TIFF predictor {predictor} is not supported")
    description = f"TIFF {name}" + {2: " + horizontal predictor (2)", 3: " + floating-point predictor (3)"}.get(predictor, "")
    return CodecChain(compressor, tuple(filters), description, python_ok, tuple(notes))


def _codec(config: dict[str, Any]) -> Any:
    import numcodecs

    if config["id"].startswith("imagecodecs_"):
        import imagecodecs.numcodecs

        imagecodecs.numcodecs.register_codecs(verbose=False)
    return numcodecs.get_codec(dict(config))


def encode_chunk(chain: CodecChain, chunk: np.ndarray) -> bytes:
    """Encode `chunk` with `chain` (filters, then the compressor)."""
    data: Any = np.ascontiguousarray(chunk)
    for config in chain.filters:
        data = _codec(config).encode(data)
    if chain.compressor is not None:
        data = _codec(chain.compressor).encode(data)
    return bytes(np.asarray(data).tobytes() if isinstance(data, np.ndarray) else data)


def decode_chunk(chain: CodecChain, data: bytes, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Decode one chunk's bytes with `chain` into an array of `shape`."""
    buf: Any = data
    if chain.compressor is not None:
        buf = _codec(chain.compressor).decode(buf)
    for config in reversed(chain.filters):
        buf = _codec(config).decode(buf)
    data = np.asarray(buf).tobytes() if isinstance(buf, np.ndarray) else bytes(buf)
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if len(data) != expected:
        raise ValueError(f"the chunk decodes to {len(data)} bytes, not {expected} (a short tile: its writer "
                         "stored fewer rows or columns than the tile size, which Zarr readers cannot pad)")
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)
