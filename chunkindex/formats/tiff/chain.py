"""TIFF compression and predictor tags to a Zarr v2 codec chain."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from chunkindex.codecs import CodecChain, UnsupportedCodec

# Compression tag -> (name, Zarr v2 compressor). LERC (34887) and JPEG (7)
# are built in `tiff_chain`; anything absent is refused.
COMPRESSIONS: dict[int, tuple[str, dict[str, Any] | None]] = {
    1: ("none", None),
    5: ("LZW", {"id": "imagecodecs_lzw"}),
    8: ("DEFLATE", {"id": "zlib", "level": 1}),
    32946: ("DEFLATE", {"id": "zlib", "level": 1}),
    32773: ("PackBits", {"id": "imagecodecs_packbits"}),
    34925: ("LZMA", {"id": "lzma", "format": 1, "check": -1, "preset": None, "filters": None}),
    50000: ("ZSTD", {"id": "zstd", "level": 1}),
    50001: ("WebP", {"id": "imagecodecs_webp"}),
    34712: ("JPEG 2000", {"id": "imagecodecs_jpeg2k"}),
    50002: ("JPEG XL", {"id": "imagecodecs_jpegxl"}),
    52546: ("JPEG XL", {"id": "imagecodecs_jpegxl"}),
}
LERC, JPEG, OLD_JPEG = 34887, 7, 6
NAMES = {**{code: name for code, (name, _) in COMPRESSIONS.items()}, LERC: "LERC", JPEG: "JPEG",
         OLD_JPEG: "old-style JPEG"}
# LercParameters' additional compression -> the compressor applied before LERC decoding.
LERC_COMPRESSORS: dict[int, dict[str, Any] | None] = {0: None, 1: {"id": "zlib", "level": 1},
                                                      2: {"id": "zstd", "level": 1}}
# Predictor -> (filter id, description); 1 (and 0) is none.
PREDICTORS = {2: ("imagecodecs_delta", " + horizontal predictor (2)"),
              3: ("imagecodecs_floatpred", " + floating-point predictor (3)")}


def _copy(config: dict[str, Any] | None) -> dict[str, Any] | None:
    return dict(config) if config is not None else None


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
    bits: int | None = None,
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
        bits: bits per sample; 1, 2 or 4 (NBITS) unpack each row's packed
            samples to bytes (rows start on a byte boundary, as in TIFF).

    Raises:
        UnsupportedCodec: when no reader decodes the encoding.
    """
    filters: list[dict[str, Any]] = []
    notes: list[str] = []
    python_ok = True
    name = NAMES.get(compression, f"compression {compression}")
    compressor: dict[str, Any] | None
    if compression in COMPRESSIONS:
        compressor = _copy(COMPRESSIONS[compression][1])
    elif compression == LERC:
        extra = (lerc_parameters or [4, 0])[1] if lerc_parameters and len(lerc_parameters) > 1 else 0
        if extra not in LERC_COMPRESSORS:
            raise UnsupportedCodec(f"{where}: LERC with additional compression {extra} is not supported")
        compressor = _copy(LERC_COMPRESSORS[extra])
        filters.append({"id": "imagecodecs_lerc"})
    elif compression == JPEG:
        compressor = jpeg_config(jpeg_tables, photometric, dtype, chunk_shape[-1] if x_axis == -2 else 1)
    elif compression == OLD_JPEG:
        raise UnsupportedCodec(f"{where}: old-style JPEG (TIFF Compression 6) tiles cannot be decoded through "
                               "references: their JPEG streams are split over tags and strips; convert the file "
                               "(gdal_translate -co COMPRESS=JPEG) to index it")
    else:
        raise UnsupportedCodec(f"{where}: TIFF {name} tiles cannot be decoded through references")

    if bits in (1, 2, 4):
        if predictor not in (0, 1):
            raise UnsupportedCodec(f"{where}: a predictor on {bits}-bit samples is not supported")
        row = int(np.prod(chunk_shape[x_axis:]))  # samples of one row of the chunk
        filters.insert(0, {"id": "imagecodecs_packints", "dtype": "|u1", "bitspersample": bits,
                           "bitorder": None, "runlen": row})
    if predictor in PREDICTORS:
        filters.insert(0, {"id": PREDICTORS[predictor][0], "shape": list(chunk_shape), "dtype": dtype,
                           "axis": x_axis, "dist": 1})
    elif predictor not in (0, 1):
        raise UnsupportedCodec(f"{where}: TIFF predictor {predictor} is not supported")
    description = f"TIFF {name}" + PREDICTORS.get(predictor, ("", ""))[1]
    if bits in (1, 2, 4):
        description += f" + {bits}-bit packed samples"
    return CodecChain(compressor, tuple(filters), description, python_ok, tuple(notes))


# PhotometricInterpretation -> (colour space of the JPEG data, of the samples).
JPEG_COLORSPACES = {0: ("GRAYSCALE", "GRAYSCALE"), 1: ("GRAYSCALE", "GRAYSCALE"), 2: ("RGB", "RGB"),
                    5: ("CMYK", "CMYK"), 6: ("YCbCr", "RGB")}


def jpeg_config(jpeg_tables: bytes | None, photometric: int | None, dtype: str,
                samples: int) -> dict[str, Any]:
    """imagecodecs' `Jpeg` numcodecs config decoding one TIFF JPEG tile.

    The shared JPEGTables (quantisation and Huffman tables that libtiff
    leaves out of each abbreviated tile stream) go in `tables` as base64, which
    the codec's `from_config` decodes. The colour spaces are explicit because
    libtiff writes no JFIF/Adobe marker: a 3-sample stream is YCbCr when
    PhotometricInterpretation is YCbCr (decoded to RGB) and RGB when it is
    RGB. `samples` is the number of interleaved samples of a chunk: a
    band-separate chunk holds one, grey whatever the photometric.
    """
    if samples == 1:
        jpeg_space, data_space = "GRAYSCALE", "GRAYSCALE"
    else:
        jpeg_space, data_space = JPEG_COLORSPACES.get(photometric or 0, (None, None))
        if jpeg_space is None:
            raise UnsupportedCodec(f"JPEG tiles of {samples} samples with PhotometricInterpretation "
                                   f"{photometric} have no known colour space")
    config: dict[str, Any] = {"id": "imagecodecs_jpeg", "bitspersample": np.dtype(dtype).itemsize * 8,
                              "colorspace_jpeg": jpeg_space, "colorspace_data": data_space}
    if jpeg_tables:
        config["tables"] = base64.b64encode(jpeg_tables).decode()
    return config
