"""Odd files for tests: every TIFF and NetCDF layout the extractors must
either index exactly or refuse with a clear error.

TIFF (folder `tiff/`): pixel-interleaved and band-separate multi-band COGs,
BigTIFF, big-endian, sparse tiles (byte count 0), striped (not tiled), LZW,
uncompressed, a TIFF truncated inside its tile data, one truncated inside its
header, and a file named `.tif` that is not a TIFF.
NetCDF (folder `netcdf/`): uneven edge chunks, never-written chunks, and a
month whose variable has a different shape from the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chunkindex.synthetic import bran
from chunkindex.synthetic.manifest import FixtureSet

TIFF_SIZE = (300, 500)  # rows, columns: edge tiles are partial with 128 x 128 tiles
TIFF_CASES: dict[str, list[str]] = {
    "multiband-pixel.tif": ["TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128", "COMPRESS=DEFLATE", "INTERLEAVE=PIXEL"],
    "multiband-band.tif": ["TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128", "COMPRESS=DEFLATE", "INTERLEAVE=BAND"],
    "bigtiff.tif": ["TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128", "COMPRESS=ZSTD", "BIGTIFF=YES"],
    "big-endian.tif": ["TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128", "COMPRESS=DEFLATE", "ENDIANNESS=BIG"],
    "sparse.tif": ["TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128", "COMPRESS=DEFLATE", "SPARSE_OK=TRUE"],
    "striped.tif": ["TILED=NO", "COMPRESS=DEFLATE", "BLOCKYSIZE=16"],
    "lzw.tif": ["TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128", "COMPRESS=LZW"],
    "uncompressed.tif": ["TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128", "COMPRESS=NONE"],
}


def _pattern(seed: int, bands: int, dtype: np.dtype) -> np.ndarray:
    rows, cols = TIFF_SIZE
    rng = np.random.default_rng([seed, 20, bands])
    y, x = np.mgrid[0:rows, 0:cols]
    out = np.empty((bands, rows, cols), dtype=dtype)
    for b in range(bands):
        smooth = 100 + 60 * np.sin(x / 37.0 + b) * np.cos(y / 23.0 - b)
        out[b] = (smooth + rng.integers(0, 20, size=(rows, cols))).astype(dtype)
    return out


def write_tiff(path: Path, options: list[str], seed: int, bands: int = 1, dtype: str = "uint16",
               sparse: bool = False) -> None:
    """Write one georeferenced test TIFF with GDAL's GTiff driver."""
    from osgeo import gdal, osr

    gdal.UseExceptions()
    array = _pattern(seed, bands, np.dtype(dtype))
    rows, cols = TIFF_SIZE
    gdal_type = gdal.GDT_Byte if dtype == "uint8" else gdal.GDT_UInt16
    ds = gdal.GetDriverByName("GTiff").Create(str(path), cols, rows, bands, gdal_type, options)
    ds.SetGeoTransform((500000.0, 30.0, 0.0, 7000000.0, 0.0, -30.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32755)
    ds.SetSpatialRef(srs)
    for b in range(bands):
        band = ds.GetRasterBand(b + 1)
        band.SetNoDataValue(0)
        if sparse:
            # Only two tiles written; the others stay empty (offset and byte count 0).
            band.WriteArray(array[b, :128, :128], 0, 0)
            band.WriteArray(array[b, 128:256, 256:384], 256, 128)
        else:
            band.WriteArray(array[b])
    ds.Close()


def generate(fixture_set: FixtureSet, folder: Path) -> None:
    seed = fixture_set.seed
    tiff_dir = folder / "tiff"
    tiff_dir.mkdir(parents=True)
    for name, options in TIFF_CASES.items():
        bands = 3 if name.startswith("multiband") else 1
        dtype = "uint8" if bands == 3 else "uint16"
        write_tiff(tiff_dir / name, options, seed, bands=bands, dtype=dtype,
                   sparse=name == "sparse.tif")
    whole = (tiff_dir / "uncompressed.tif").read_bytes()
    (tiff_dir / "truncated-data.tif").write_bytes(whole[: len(whole) // 2])
    (tiff_dir / "truncated-header.tif").write_bytes(whole[:64])
    (tiff_dir / "not-a-tiff.tif").write_bytes(b"<html><body>404 Not Found</body></html>\n" * 8)

    nc_dir = folder / "netcdf"
    # A 130 x 312 grid in 60 x 100 chunks: partial edge chunks in y and x.
    uneven = (1, 1, 60, 100)
    for month in (1, 2):
        bran.write_month(nc_dir / "uneven" / bran.file_name(2023, month), seed, 2023, month,
                         scale=130 / bran.FULL_Y, n_depths=2, days=3, chunks=uneven)
    bran.write_month(nc_dir / "unwritten" / bran.file_name(2023, 1), seed, 2023, 1,
                     scale=130 / bran.FULL_Y, n_depths=2, days=4, chunks=uneven, skip_chunks=True)
    bran.write_month(nc_dir / "mismatch" / bran.file_name(2023, 1), seed, 2023, 1,
                     scale=130 / bran.FULL_Y, n_depths=2, days=2, chunks=uneven)
    bran.write_month(nc_dir / "mismatch" / bran.file_name(2023, 2), seed, 2023, 2,
                     scale=130 / bran.FULL_Y, n_depths=3, days=2, chunks=uneven)
