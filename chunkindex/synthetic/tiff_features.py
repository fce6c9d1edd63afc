"""One small GeoTIFF per TIFF feature that GDAL reads (issue 15, item 3).

Every file is written by GDAL's GTiff driver from the seed, so the set is
byte-reproducible (the manifest records it). `FEATURES` is the catalogue:
file name -> the feature it exercises, which the tests and the coverage
table (`docs/tiff-coverage.md`) use. Images are small (75 x 90 pixels,
32 x 32 tiles, so edge tiles are partial) to keep the tests quick.

Covered: NBITS 1/2/4, palette, MINISWHITE, signed bytes, 64-bit integers,
complex types, float16 (with predictor 3), an internal mask IFD,
alpha/ExtraSamples, PixelIsPoint, GCPs, RPCs, each codec little-endian
classic TIFF and big-endian BigTIFF (predictors 2 and 3 where they apply),
LERC with and without its deflate/zstd layer, short last strips, short
tiles, JPEG grey / YCbCr / RGB with shared tables and with per-tile tables.

Not covered: old-style JPEG (Compression 6). Neither GDAL nor libtiff can
write it (libtiff reads it only), so it cannot be generated here; the
reader refuses it by name.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chunkindex.synthetic.manifest import FixtureSet

HEIGHT, WIDTH, TILE = 75, 90, 32
GEOTRANSFORM = (500000.0, 30.0, 0.0, 7000000.0, 0.0, -30.0)
EPSG = 32755
TILED = ("TILED=YES", f"BLOCKXSIZE={TILE}", f"BLOCKYSIZE={TILE}")


@dataclass(frozen=True)
class Feature:
    """One synthetic file: what it shows and how GDAL writes it.

    `extra` names a finishing step (colour table, mask, GCPs, ...) applied
    to the open dataset; `patch` rewrites the closed file (short tiles).
    """

    feature: str
    gdal_type: str = "UInt16"
    bands: int = 1
    options: tuple[str, ...] = TILED + ("COMPRESS=DEFLATE",)
    extra: str | None = None
    patch: str | None = None
    config: dict[str, str] = field(default_factory=dict)


# Codecs written both as a little-endian classic TIFF and a big-endian
# BigTIFF: (name, GDAL type, bands, creation options).
CODECS: dict[str, tuple[str, int, tuple[str, ...]]] = {
    "none": ("UInt16", 1, ("COMPRESS=NONE",)),
    "deflate-pred2": ("UInt16", 1, ("COMPRESS=DEFLATE", "PREDICTOR=2")),
    "deflate-pred3": ("Float32", 1, ("COMPRESS=DEFLATE", "PREDICTOR=3")),
    "lzw-pred2": ("Int16", 1, ("COMPRESS=LZW", "PREDICTOR=2")),
    "packbits": ("Byte", 1, ("COMPRESS=PACKBITS",)),
    "zstd-pred2": ("UInt32", 1, ("COMPRESS=ZSTD", "PREDICTOR=2")),
    "zstd-pred3": ("Float64", 1, ("COMPRESS=ZSTD", "PREDICTOR=3")),
    "lzma": ("UInt16", 1, ("COMPRESS=LZMA",)),
    "lerc": ("Float32", 1, ("COMPRESS=LERC", "MAX_Z_ERROR=0")),
    "lerc-deflate": ("UInt16", 1, ("COMPRESS=LERC_DEFLATE", "MAX_Z_ERROR=0")),
    "lerc-zstd": ("Float32", 1, ("COMPRESS=LERC_ZSTD", "MAX_Z_ERROR=0")),
    "webp-lossless": ("Byte", 3, ("COMPRESS=WEBP", "WEBP_LOSSLESS=YES")),
    "jpeg-ycbcr": ("Byte", 3, ("COMPRESS=JPEG", "PHOTOMETRIC=YCBCR")),
}
BYTE_ORDERS = {"le": ("ENDIANNESS=LITTLE", "BIGTIFF=NO"), "be-bigtiff": ("ENDIANNESS=BIG", "BIGTIFF=YES")}


def _catalogue() -> dict[str, Feature]:
    features: dict[str, Feature] = {
        "nbits1.tif": Feature("1-bit samples (NBITS=1)", "Byte", options=TILED + ("NBITS=1", "COMPRESS=DEFLATE")),
        "nbits2.tif": Feature("2-bit samples (NBITS=2)", "Byte", options=TILED + ("NBITS=2", "COMPRESS=DEFLATE")),
        "nbits4.tif": Feature("4-bit samples (NBITS=4)", "Byte", options=TILED + ("NBITS=4", "COMPRESS=NONE")),
        "palette.tif": Feature("palette (ColorMap)", "Byte", options=TILED + ("COMPRESS=DEFLATE", "PHOTOMETRIC=PALETTE"),
                               extra="palette"),
        "miniswhite.tif": Feature("PhotometricInterpretation MinIsWhite", "Byte",
                                  options=TILED + ("COMPRESS=DEFLATE", "PHOTOMETRIC=MINISWHITE")),
        "int8.tif": Feature("signed bytes (Int8)", "Int8", options=TILED + ("COMPRESS=DEFLATE", "PREDICTOR=2")),
        "int64.tif": Feature("64-bit signed integers", "Int64", options=TILED + ("COMPRESS=ZSTD", "PREDICTOR=2")),
        "uint64.tif": Feature("64-bit unsigned integers", "UInt64", options=TILED + ("COMPRESS=DEFLATE",)),
        "cint16.tif": Feature("complex 16-bit integers (CInt16)", "CInt16"),
        "cint32.tif": Feature("complex 32-bit integers (CInt32)", "CInt32"),
        "cfloat32.tif": Feature("complex 32-bit floats (CFloat32)", "CFloat32"),
        "cfloat64.tif": Feature("complex 64-bit floats (CFloat64)", "CFloat64", options=TILED + ("COMPRESS=ZSTD",)),
        "float16.tif": Feature("16-bit floats", "Float16", options=TILED + ("COMPRESS=DEFLATE",)),
        "float16-pred3.tif": Feature("16-bit floats, floating-point predictor", "Float16",
                                     options=TILED + ("COMPRESS=DEFLATE", "PREDICTOR=3")),
        "mask.tif": Feature("internal mask IFD (per dataset)", "Byte", bands=3,
                            options=TILED + ("COMPRESS=DEFLATE",), extra="mask",
                            config={"GDAL_TIFF_INTERNAL_MASK": "YES"}),
        "alpha.tif": Feature("alpha band (ExtraSamples=2, RGBA)", "Byte", bands=4,
                             options=TILED + ("COMPRESS=DEFLATE", "PHOTOMETRIC=RGB", "ALPHA=YES")),
        "extrasamples.tif": Feature("unspecified ExtraSamples (2 bands)", "UInt16", bands=2,
                                    options=TILED + ("COMPRESS=DEFLATE", "INTERLEAVE=PIXEL")),
        "pixel-is-point.tif": Feature("RasterPixelIsPoint georeferencing", extra="pixel_is_point"),
        "gcps.tif": Feature("ground control points, no geotransform", extra="gcps"),
        "rpcs.tif": Feature("RPC coefficients (RPCCoefficientTag)", extra="rpcs"),
        "short-strip-deflate-pred2.tif": Feature(
            "strips, short last strip (DEFLATE, predictor 2)",
            options=("TILED=NO", "BLOCKYSIZE=16", "COMPRESS=DEFLATE", "PREDICTOR=2")),
        "short-strip-none-rgb.tif": Feature(
            "strips, short last strip (uncompressed RGB)", "Byte", bands=3,
            options=("TILED=NO", "BLOCKYSIZE=16", "COMPRESS=NONE", "PHOTOMETRIC=RGB")),
        "short-strip-lzw-band.tif": Feature(
            "strips, short last strip (LZW, band-separate)", "Byte", bands=3,
            options=("TILED=NO", "BLOCKYSIZE=16", "COMPRESS=LZW", "INTERLEAVE=BAND")),
        "short-strip-jpeg.tif": Feature(
            "strips, short last strip (JPEG grey)", "Byte",
            options=("TILED=NO", "BLOCKYSIZE=16", "COMPRESS=JPEG")),
        "short-tiles-none.tif": Feature("short edge tiles (uncompressed, bottom tiles hold only their rows)",
                                        options=TILED + ("COMPRESS=NONE",), patch="short_tiles"),
        "short-tiles-deflate.tif": Feature("short edge tiles (DEFLATE, bottom tiles hold only their rows)",
                                           options=TILED + ("COMPRESS=DEFLATE",), patch="short_tiles"),
        "jpeg-grey.tif": Feature("JPEG grey, shared JPEGTables", "Byte", options=TILED + ("COMPRESS=JPEG",)),
        "jpeg-ycbcr.tif": Feature("JPEG YCbCr 4:2:0 RGB, shared JPEGTables", "Byte", bands=3,
                                  options=TILED + ("COMPRESS=JPEG", "PHOTOMETRIC=YCBCR")),
        "jpeg-ycbcr-pertile.tif": Feature("JPEG YCbCr RGB, tables in every tile (JPEGTABLESMODE=0)", "Byte",
                                          bands=3, options=TILED + ("COMPRESS=JPEG", "PHOTOMETRIC=YCBCR",
                                                                    "JPEGTABLESMODE=0")),
        "jpeg-rgb.tif": Feature("JPEG in RGB colour space (no YCbCr)", "Byte", bands=3,
                                options=TILED + ("COMPRESS=JPEG", "PHOTOMETRIC=RGB")),
        "jpeg-band.tif": Feature("JPEG grey, band-separate 3 bands", "Byte", bands=3,
                                 options=TILED + ("COMPRESS=JPEG", "INTERLEAVE=BAND")),
        "webp-lossy.tif": Feature("WebP lossy RGB", "Byte", bands=3, options=TILED + ("COMPRESS=WEBP",)),
        "lerc-nan.tif": Feature("LERC Float32 with NaN pixels (LERC no-data mask)", "Float32",
                                options=TILED + ("COMPRESS=LERC", "MAX_Z_ERROR=0"), extra="nan_hole"),
    }
    for codec, (gdal_type, bands, options) in CODECS.items():
        for order, order_options in BYTE_ORDERS.items():
            kind = "big-endian BigTIFF" if order != "le" else "little-endian classic TIFF"
            features[f"codec-{codec}-{order}.tif"] = Feature(
                f"{codec} ({gdal_type}), {kind}", gdal_type, bands, TILED + options + order_options)
    return features


FEATURES: dict[str, Feature] = _catalogue()


def _values(rng: np.random.Generator, gdal_type: str, bands: int) -> np.ndarray:
    """Smooth waves plus noise in the range of `gdal_type`, shape (bands, H, W)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    waves = np.stack([np.sin(x / (9.0 + 3 * b) + b) * np.cos(y / (7.0 + 2 * b) - b) for b in range(bands)])
    noise = rng.standard_normal((bands, HEIGHT, WIDTH))
    unit = (waves + 1) / 2  # 0..1
    if gdal_type == "Byte":
        return np.clip(unit * 230 + 12 + 4 * noise, 0, 255).astype(np.uint8)
    if gdal_type == "Int8":
        return np.clip(unit * 250 - 125 + 2 * noise, -128, 127).astype(np.int8)
    if gdal_type in ("UInt16", "Int16", "UInt32", "Int64", "UInt64"):
        base = unit * 3000 + 10 * noise
        if gdal_type == "Int16":
            return (base - 1500).astype(np.int16)
        if gdal_type == "Int64":
            return (base.astype(np.int64) - 1500) * 3_000_000_000  # beyond 32 bits
        if gdal_type == "UInt64":
            return base.astype(np.uint64) * np.uint64(5_000_000_000_000)
        return np.abs(base).astype({"UInt16": np.uint16, "UInt32": np.uint32}[gdal_type])
    if gdal_type in ("Float16", "Float32", "Float64"):
        dtype = {"Float16": np.float16, "Float32": np.float32, "Float64": np.float64}[gdal_type]
        # Multiples of 1/1024: the low mantissa byte is 0, so no value byte-swapped
        # is a NaN (GDAL's LERC in a big-endian TIFF encodes swapped values and
        # stores NaN patterns as LERC no-data, reading them back altered).
        return (np.round((unit * 40 - 5 + 0.01 * noise) * 1024) / 1024).astype(dtype)
    if gdal_type in ("CInt16", "CInt32"):
        real, imag = (unit * 1000).astype(np.int32), (noise * 100).astype(np.int32)
        dtype = np.int16 if gdal_type == "CInt16" else np.int32
        pair = np.stack([real, imag], axis=-1).astype(dtype)
        return pair  # (bands, H, W, 2): written through a raw buffer
    if gdal_type in ("CFloat32", "CFloat64"):
        dtype = np.complex64 if gdal_type == "CFloat32" else np.complex128
        return (unit * 10 + 1j * noise).astype(dtype)
    raise ValueError(f"no value generator for {gdal_type}")


def _finish(ds: Any, extra: str | None, rng: np.random.Generator) -> None:
    """Georeferencing plus the feature's finishing step, on the open dataset."""
    from osgeo import gdal, osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    if extra == "gcps":
        gcps = [gdal.GCP(GEOTRANSFORM[0] + px * 30.0 + dx, GEOTRANSFORM[3] - ln * 30.0 + dy, 0.0, px, ln)
                for (px, ln), (dx, dy) in zip([(0, 0), (WIDTH, 0), (0, HEIGHT), (WIDTH, HEIGHT), (45, 37)],
                                              rng.uniform(-5, 5, size=(5, 2)).tolist())]
        ds.SetGCPs(gcps, srs)
        return
    if extra == "pixel_is_point":
        ds.SetMetadataItem("AREA_OR_POINT", "Point")
    ds.SetGeoTransform(GEOTRANSFORM)
    ds.SetSpatialRef(srs)
    if extra == "rpcs":
        coefficients = rng.uniform(-1e-3, 1e-3, size=(4, 20))
        coefficients[:, 0] = [0.01, 1.0, -0.02, 1.0]  # constant terms of numerators and denominators
        ds.SetMetadata({
            "LINE_OFF": "37", "SAMP_OFF": "45", "LAT_OFF": "-27.1", "LONG_OFF": "153.0", "HEIGHT_OFF": "20",
            "LINE_SCALE": "38", "SAMP_SCALE": "45", "LAT_SCALE": "0.01", "LONG_SCALE": "0.01",
            "HEIGHT_SCALE": "100",
            **{key: " ".join(f"{v:.12g}" for v in row) for key, row in zip(
                ("LINE_NUM_COEFF", "LINE_DEN_COEFF", "SAMP_NUM_COEFF", "SAMP_DEN_COEFF"), coefficients)},
        }, "RPC")
    if extra == "palette":
        table = gdal.ColorTable()
        for i in range(256):
            table.SetColorEntry(i, (i, 255 - i, (i * 7) % 256, 255))
        ds.GetRasterBand(1).SetRasterColorTable(table)


def _short_tiles(path: Path, compression: str) -> None:
    """Rewrite the bottom row of tiles to hold only the image's rows, as some
    writers do (GDAL's autotest `separate_tiled.tif`): the tile data shrinks
    in place and TileByteCounts is patched."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offsets, counts = list(page.dataoffsets), list(page.databytecounts)
        counts_tag = page.tags["TileByteCounts"]
        itemsize, byteorder = page.dtype.itemsize, tif.byteorder
        counts_at, count_size = counts_tag.valueoffset, {3: 2, 4: 4, 16: 8}[int(counts_tag.dtype)]
    across = -(-WIDTH // TILE)
    rows = HEIGHT - (HEIGHT // TILE) * TILE
    data = bytearray(path.read_bytes())
    for k in range(len(offsets) - across, len(offsets)):
        tile = np.frombuffer(_decoded(bytes(data[offsets[k]:offsets[k] + counts[k]]), compression),
                             dtype=byteorder + "u" + str(itemsize)).reshape(TILE, TILE)
        short = np.ascontiguousarray(tile[:rows]).tobytes()
        encoded = short if compression == "NONE" else zlib.compress(short, 6)
        assert len(encoded) <= counts[k]
        data[offsets[k]:offsets[k] + counts[k]] = encoded + bytes(counts[k] - len(encoded))
        counts[k] = len(encoded)
    fmt = {2: "H", 4: "I", 8: "Q"}[count_size]
    packed = np.array(counts, dtype=byteorder + fmt).tobytes()
    data[counts_at:counts_at + len(packed)] = packed
    path.write_bytes(bytes(data))


def _decoded(raw: bytes, compression: str) -> bytes:
    return raw if compression == "NONE" else zlib.decompress(raw)


PATCHES: dict[str, Callable[[Path, str], None]] = {"short_tiles": _short_tiles}


def write_feature(path: Path, spec: Feature, seed: int) -> None:
    """Write one feature file with GDAL's GTiff driver (and its patch, if any).

    The values derive from the seed and the file name, so adding a file
    leaves the others unchanged.
    """
    from osgeo import gdal

    gdal.UseExceptions()
    rng = np.random.default_rng([seed, 15, zlib.crc32(path.name.encode())])
    gdal_type = gdal.GetDataTypeByName(spec.gdal_type)
    if gdal_type == gdal.GDT_Unknown:
        raise ValueError(f"{path.name}: this GDAL ({gdal.__version__}) has no data type {spec.gdal_type}")
    values = _values(rng, spec.gdal_type, spec.bands)
    with gdal.config_options(spec.config):
        ds = gdal.GetDriverByName("GTiff").Create(str(path), WIDTH, HEIGHT, spec.bands, gdal_type,
                                                  list(spec.options))
        _finish(ds, spec.extra, rng)
        for b in range(spec.bands):
            band = ds.GetRasterBand(b + 1)
            if spec.gdal_type in ("CInt16", "CInt32"):
                band.WriteRaster(0, 0, WIDTH, HEIGHT, values[b].tobytes(), buf_type=gdal_type)
            elif spec.gdal_type.startswith("Byte") and "NBITS=" in " ".join(spec.options):
                bits = int(next(o for o in spec.options if o.startswith("NBITS=")).split("=")[1])
                band.WriteArray(values[b] >> (8 - bits))
            else:
                if spec.extra == "nan_hole":
                    values[b, 20:40, 10:50] = np.nan
                band.WriteArray(values[b])
        if spec.extra == "mask":
            ds.CreateMaskBand(gdal.GMF_PER_DATASET)
            valid = np.ones((HEIGHT, WIDTH), np.uint8) * 255
            valid[10:30, 20:70] = 0  # a hole
            valid[:, :5] = 0
            ds.GetRasterBand(1).GetMaskBand().WriteArray(valid)
        ds.Close()
    if spec.patch:
        compression = next(o.split("=")[1] for o in spec.options if o.startswith("COMPRESS="))
        PATCHES[spec.patch](path, compression)


def generate(fixture_set: FixtureSet, folder: Path) -> None:
    """Write every file of `FEATURES` into `folder` (the `tiff-features` set)."""
    for name, spec in sorted(FEATURES.items()):
        write_feature(folder / name, spec, fixture_set.seed)
    sidecars = sorted(p.name for p in folder.iterdir() if p.suffix not in (".tif",))
    if sidecars:  # everything a reader needs must be inside the TIFF itself
        raise RuntimeError(f"GDAL wrote side-car files {sidecars}; the features must live in the TIFFs")
