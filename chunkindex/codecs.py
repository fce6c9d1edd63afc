"""Codec chains, format-neutral: a Zarr v2 compressor + filters, who can
decode them, and encoding/decoding one chunk. Each format maps its own
encodings to a chain (chunkindex.formats.tiff.chain, chunkindex.formats.hdf.chain).

Honesty rules: the true chain is always recorded (ids that zarr-python with
numcodecs + imagecodecs decode); whether GDAL's Zarr driver can decode it is
stated per array; nothing is ever dropped silently.

GDAL's Zarr v2 decoders: compressors zlib, gzip, zstd, lz4, lzma, blosc;
filters shuffle, delta (flattened), quantize, fixedscaleoffset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

GDAL_COMPRESSORS = {"zlib", "gzip", "zstd", "lz4", "lzma", "blosc"}
GDAL_FILTERS = {"shuffle", "delta", "quantize", "fixedscaleoffset"}
REFS_ONLY_NOTE = "references only: every pixel read fails (use GetRawBlockInfo, or the array itself with zarr-python)"
# The chain of a references-only array: one that no reader can apply to raw
# tile bytes, so every pixel read fails in GDAL and in zarr-python, while GDAL
# still opens the array (for GetRawBlockInfo). `imagecodecs_tiff` decodes whole
# TIFF files only (GDAL's Zarr driver and imagecodecs both refuse tile bytes).
# GDAL 3.13 skips that decompressor in multi-threaded reads (GDAL_NUM_THREADS)
# and takes the raw bytes: a shuffle filter of an element size GDAL refuses
# makes those reads fail too (zarr-python never gets that far).
REFS_ONLY_COMPRESSOR: dict[str, Any] = {"id": "imagecodecs_tiff"}
REFS_ONLY_FILTERS: tuple[dict[str, Any], ...] = ({"id": "shuffle", "elementsize": 3},)


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

    def refs_only(self) -> CodecChain:
        """The chain of this chain's references-only variant: GDAL opens it,
        and every pixel read through it fails (REFS_ONLY_COMPRESSOR)."""
        return CodecChain(REFS_ONLY_COMPRESSOR, REFS_ONLY_FILTERS,
                          f"references only; the data are {self.description}", python_decodable=False)


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
