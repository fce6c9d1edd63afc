"""The CRI GDAL driver plugin (gdal-driver/): pixels through GDAL's command-line
tools equal GDAL's own read of the source files; GetRawBlockInfo equals the
source's tile/chunk table; bad input gives errors naming the file or chunk.

Most CRI indexes here are written by tests/cri_testdata.py (a small test-only
writer kept for layouts and codecs the project's writer does not produce from
a single file, e.g. HDF5 filter masks); the last tests index real files with
the project's writer (`chunkindex index --kinds cri-parquet`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.cri_testdata import cri_from_hdf5, cri_from_tiff

BIN = Path(sys.executable).parent
REAL_COGS = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real-cogs"
KERCHUNK_TESTS = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "kerchunk-tests"


def tool(name: str) -> str:
    exe = BIN / name
    return str(exe) if exe.exists() else (shutil.which(name) or name)


# Under AddressSanitizer (tools/test_driver_asan.sh), GDAL's command-line
# programs hang at exit on their error path (a libp11-kit destructor deadlock
# under an ASan preload, with or without this plugin), so the same programs run
# in process through their library entry points (gdal.Translate etc. take the
# command-line arguments as they are).
IN_PROCESS = bool(os.environ.get("CRI_INPROCESS_TOOLS"))


def _run_in_process(args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    from osgeo import gdal

    name, rest = args[0], list(args[1:])
    config = {}
    while "--config" in rest:
        i = rest.index("--config")
        config[rest[i + 1]] = rest[i + 2]
        del rest[i:i + 3]
    rest = [a for a in rest if a != "-q"]
    try:
        with gdal.config_options(config), gdal.ExceptionMgr(useExceptions=True):
            if name == "gdal_translate":
                gdal.Translate(rest[-1], rest[-2], options=rest[:-2])
                out = ""
            elif name == "gdalwarp":
                gdal.Warp(rest[-1], rest[-2], options=rest[:-2])
                out = ""
            elif name == "gdalinfo":
                out = gdal.Info(rest[-1], options=rest[:-1])
                out = json.dumps(out) if isinstance(out, dict) else out
            elif name == "gdalmdiminfo":
                out = gdal.MultiDimInfo(rest[-1], options=rest[:-1])
                out = json.dumps(out) if isinstance(out, dict) else out
            else:
                pytest.skip(f"{name} has no library entry point to run in process")
    except RuntimeError as exc:
        return subprocess.CompletedProcess(args, 1, "", f"ERROR 1: {exc}")
    return subprocess.CompletedProcess(args, 0, out or "", "")


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if IN_PROCESS:
        result = _run_in_process(args)
    else:
        result = subprocess.run([tool(args[0]), *args[1:]], capture_output=True, text=True, timeout=300,
                                check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def gdal():
    from osgeo import gdal

    gdal.UseExceptions()
    if gdal.GetDriverByName("CRI") is None:
        pytest.fail("the CRI driver plugin is not loaded: run `make setup` (tools/build_driver.sh)")
    return gdal


def conn(index: Path, variable: str = "band_data", time: int | None = None) -> str:
    s = f'CRI:"{index}":{variable}'
    return s if time is None else f"{s}:{time}"


def read_all(gdal, path: str | Path, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    ds = gdal.Open(str(path))
    return ds.ReadAsArray(*window) if window else ds.ReadAsArray()


def assert_same(a: np.ndarray, b: np.ndarray, tolerance: float = 0) -> float:
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    if a.dtype.kind in "fc":
        assert np.array_equal(np.isnan(a), np.isnan(b))
        a, b = np.nan_to_num(a), np.nan_to_num(b)
    wide = np.complex128 if a.dtype.kind == "c" else np.float64
    diff = float(np.max(np.abs(a.astype(wide) - b.astype(wide)))) if a.size else 0.0
    assert diff <= tolerance, f"max difference {diff} > {tolerance}"
    return diff


def translate_and_compare(gdal, index: Path, src: Path, tmp: Path, *, window=None, tolerance: float = 0,
                          variable: str = "band_data") -> float:
    """gdal_translate (the CLI) from the CRI index, compare with GDAL's read of `src`."""
    out = tmp / f"{src.stem}-{'win' if window else 'full'}.tif"
    args = ["gdal_translate", "-q", "-of", "GTiff"]
    if window:
        args += ["-srcwin", *map(str, window)]
    run(*args, conn(index, variable), str(out))
    return assert_same(read_all(gdal, out), read_all(gdal, src, window), tolerance)


# --- Synthetic TIFFs: one per codec / predictor / layout -----------------------------

ROWS, COLS = 300, 500  # 128-px tiles leave partial edge tiles; 16-row strips a short last strip
TILED = ["TILED=YES", "BLOCKXSIZE=128", "BLOCKYSIZE=128"]
CASES: dict[str, tuple[str, int, list[str]]] = {
    # name: (GDAL type, bands, creation options)
    "zstd-pred2-int16": ("Int16", 1, [*TILED, "COMPRESS=ZSTD", "PREDICTOR=2"]),
    "deflate-int16": ("Int16", 1, [*TILED, "COMPRESS=DEFLATE"]),
    "pixel-rgb-pred2-byte": ("Byte", 3, [*TILED, "COMPRESS=DEFLATE", "PREDICTOR=2", "INTERLEAVE=PIXEL"]),
    "band-uint16-pred2": ("UInt16", 3, [*TILED, "COMPRESS=DEFLATE", "PREDICTOR=2", "INTERLEAVE=BAND"]),
    "bigendian-uint16-pred2": ("UInt16", 1, [*TILED, "COMPRESS=DEFLATE", "PREDICTOR=2", "ENDIANNESS=BIG"]),
    "bigendian-float32-pred3": ("Float32", 1, [*TILED, "COMPRESS=DEFLATE", "PREDICTOR=3", "ENDIANNESS=BIG"]),
    "lzw-float64-pred3": ("Float64", 1, [*TILED, "COMPRESS=LZW", "PREDICTOR=3"]),
    "pixel-float32-pred3": ("Float32", 2, [*TILED, "COMPRESS=ZSTD", "PREDICTOR=3", "INTERLEAVE=PIXEL"]),
    "float16-pred3": ("Float16", 1, [*TILED, "COMPRESS=DEFLATE", "PREDICTOR=3"]),
    "lzma-int32-pred2": ("Int32", 1, [*TILED, "COMPRESS=LZMA", "PREDICTOR=2"]),
    "int64-pred2": ("Int64", 1, [*TILED, "COMPRESS=DEFLATE", "PREDICTOR=2"]),
    "bigendian-uint64-pred2": ("UInt64", 1, [*TILED, "COMPRESS=ZSTD", "PREDICTOR=2", "ENDIANNESS=BIG"]),
    "packbits-byte": ("Byte", 1, [*TILED, "COMPRESS=PACKBITS"]),
    "lzw-byte": ("Byte", 1, [*TILED, "COMPRESS=LZW"]),
    "uncompressed-int8": ("Int8", 1, [*TILED, "COMPRESS=NONE"]),
    "bigtiff-zstd": ("Float32", 1, [*TILED, "COMPRESS=ZSTD", "BIGTIFF=YES"]),
    "striped-short-deflate": ("UInt16", 1, ["TILED=NO", "BLOCKYSIZE=16", "COMPRESS=DEFLATE"]),
    "striped-short-none": ("Byte", 3, ["TILED=NO", "BLOCKYSIZE=16", "COMPRESS=NONE", "INTERLEAVE=PIXEL"]),
    "striped-short-lzw-pred2-band": ("Int16", 2, ["TILED=NO", "BLOCKYSIZE=7", "COMPRESS=LZW", "PREDICTOR=2",
                                                  "INTERLEAVE=BAND"]),
    "sparse": ("UInt16", 1, [*TILED, "COMPRESS=DEFLATE", "SPARSE_OK=TRUE"]),
    "complex-cfloat32": ("CFloat32", 1, [*TILED, "COMPRESS=DEFLATE"]),
}
LOSSY: dict[str, tuple[str, int, list[str]]] = {
    "jpeg-ycbcr": ("Byte", 3, [*TILED, "COMPRESS=JPEG", "PHOTOMETRIC=YCBCR"]),
    "jpeg-rgb": ("Byte", 3, [*TILED, "COMPRESS=JPEG", "PHOTOMETRIC=RGB"]),
    "jpeg-gray-striped": ("Byte", 1, ["TILED=NO", "BLOCKYSIZE=16", "COMPRESS=JPEG"]),
    "webp-rgb": ("Byte", 3, [*TILED, "COMPRESS=WEBP", "WEBP_LOSSLESS=YES"]),
}


def make_tiff(gdal, path: Path, gdal_type: str, bands: int, options: list[str], seed: int = 7) -> Path:
    dt = gdal.GetDataTypeByName(gdal_type)
    np_type = {"Float16": np.float16, "CFloat32": np.complex64}.get(gdal_type)
    if np_type is None:
        from osgeo import gdal_array

        np_type = gdal_array.GDALTypeCodeToNumericTypeCode(dt)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:ROWS, 0:COLS]
    ds = gdal.GetDriverByName("GTiff").Create(str(path), COLS, ROWS, bands, dt, options)
    ds.SetGeoTransform([440720.0, 30.0, 0.0, 3751320.0, 0.0, -30.0])
    ds.SetProjection("EPSG:32611")
    for b in range(bands):
        smooth = 100 + 60 * np.sin(x / 37.0 + b) * np.cos(y / 23.0 - b)
        noise = rng.integers(0, 20, size=smooth.shape)
        data = (smooth + noise).astype(np.float64)
        if np.dtype(np_type).kind in "iu" and np.dtype(np_type).itemsize >= 4:
            data = data * 1_000_003 - 5e7 if np.dtype(np_type).kind == "i" else data * 1e12
        if np.dtype(np_type).kind == "i" and np.dtype(np_type).itemsize == 1:
            data = data - 128
        arr = data.astype(np_type) if np.dtype(np_type).kind != "c" else (data + 1j * data[::-1]).astype(np_type)
        if "SPARSE_OK=TRUE" in options:
            arr[:128, :256] = 0  # left empty: no tiles written there
        band = ds.GetRasterBand(b + 1)
        if "SPARSE_OK=TRUE" in options:
            band.WriteArray(arr[128:], 0, 128)
            band.WriteArray(arr[:128, 256:], 256, 0)
        else:
            band.WriteArray(arr)
    ds = None
    return path


@pytest.fixture(scope="module")
def synthetic(gdal, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """(TIFF, CRI index) per case."""
    root = tmp_path_factory.mktemp("cri-tiffs")
    out = {}
    for name, (gtype, bands, options) in {**CASES, **LOSSY}.items():
        tif = make_tiff(gdal, root / f"{name}.tif", gtype, bands, options)
        out[name] = (tif, cri_from_tiff(tif, root / f"{name}.cri.parquet", dictionary=name.startswith("lzw")))
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_synthetic_tiff_pixel_equal_through_gdal_translate(gdal, synthetic, tmp_path, name):
    tif, index = synthetic[name]
    translate_and_compare(gdal, index, tif, tmp_path)


@pytest.mark.parametrize("name", sorted(LOSSY))
def test_jpeg_webp_decoded_through_gdal_drivers(gdal, synthetic, tmp_path, name):
    # Same libjpeg-turbo / libwebp as GTiff's: equal, not merely close.
    tif, index = synthetic[name]
    translate_and_compare(gdal, index, tif, tmp_path)


def test_window_of_ghrsst_like_tiff(gdal, synthetic, tmp_path):
    tif, index = synthetic["zstd-pred2-int16"]
    translate_and_compare(gdal, index, tif, tmp_path, window=(100, 50, 300, 200))


def test_gdalinfo_georeferenced(gdal, synthetic):
    tif, index = synthetic["zstd-pred2-int16"]
    info = json.loads(run("gdalinfo", "-json", conn(index)).stdout)
    src = json.loads(run("gdalinfo", "-json", str(tif)).stdout)
    assert info["driverShortName"] == "CRI"
    assert info["size"] == src["size"]
    assert info["geoTransform"] == pytest.approx(src["geoTransform"])
    assert "32611" in json.dumps(info["coordinateSystem"])
    assert info["bands"][0]["type"] == "Int16"


def test_gdallocationinfo(gdal, synthetic):
    tif, index = synthetic["bigendian-float32-pred3"]
    a = run("gdallocationinfo", "-valonly", conn(index), "321", "123").stdout.strip()
    b = run("gdallocationinfo", "-valonly", str(tif), "321", "123").stdout.strip()
    assert a == b and a


def test_gdalwarp_through_cri(gdal, synthetic, tmp_path):
    tif, index = synthetic["deflate-int16"]
    run("gdalwarp", "-q", "-t_srs", "EPSG:4326", "-ts", "200", "100", "-r", "near", conn(index),
        str(tmp_path / "a.tif"))
    run("gdalwarp", "-q", "-t_srs", "EPSG:4326", "-ts", "200", "100", "-r", "near", str(tif),
        str(tmp_path / "b.tif"))
    assert_same(read_all(gdal, tmp_path / "a.tif"), read_all(gdal, tmp_path / "b.tif"))


def test_sparse_tiles_read_as_fill_and_have_no_block(gdal, synthetic):
    tif, index = synthetic["sparse"]
    ds = gdal.OpenEx(f'CRI:"{index}"', gdal.OF_MULTIDIM_RASTER)
    arr = ds.GetRootGroup().OpenMDArray("band_data")
    info = arr.GetRawBlockInfo([0, 0])
    assert info.GetFilename() is None and info.GetSize() == 0
    assert "MISSING=YES" in info.GetInfo()
    src_ds = gdal.Open(str(tif))
    assert src_ds.GetRasterBand(1).GetMetadataItem("BLOCK_SIZE_0_0", "TIFF") in (None, "0")
    assert np.all(arr.ReadAsArray()[:128, :128] == 0)


# --- Overviews --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cog(gdal, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cri-cog")
    src = make_tiff(gdal, root / "src.tif", "Int16", 1, [])
    tif = root / "cog.tif"
    gdal.Translate(str(tif), str(src), format="COG",
                   creationOptions=["COMPRESS=ZSTD", "PREDICTOR=2", "BLOCKSIZE=128", "OVERVIEW_COUNT=2"])
    return tif, cri_from_tiff(tif, root / "cog.cri.parquet")


def test_overviews_are_the_index_levels(gdal, cog, tmp_path):
    tif, index = cog
    ds = gdal.Open(conn(index))
    src = gdal.Open(str(tif))
    band, sband = ds.GetRasterBand(1), src.GetRasterBand(1)
    assert band.GetOverviewCount() == sband.GetOverviewCount() == 2
    for i in range(2):
        assert_same(band.GetOverview(i).ReadAsArray(), sband.GetOverview(i).ReadAsArray())
    # LEVEL=1 opens the first overview as the main raster.
    run("gdal_translate", "-q", "-oo", "LEVEL=1", conn(index), str(tmp_path / "l1.tif"))
    assert_same(read_all(gdal, tmp_path / "l1.tif"), sband.GetOverview(0).ReadAsArray())
    # gdal_translate -ovr uses them too.
    run("gdal_translate", "-q", "-ovr", "1", conn(index), str(tmp_path / "o1.tif"))
    assert_same(read_all(gdal, tmp_path / "o1.tif"), sband.GetOverview(1).ReadAsArray())


def test_direct_row_group_reader_agrees_with_ogr(gdal, cog, tmp_path):
    """The direct Parquet row-group reader (row groups picked by their
    statistics) and the OGR route give the same rows, every level, on an
    index split into many small row groups (several arrays' rows per group)."""
    tif, index = cog
    small = tmp_path / "small-groups.cri.parquet"
    pq.write_table(pq.read_table(index), small, row_group_size=2)
    assert pq.ParquetFile(small).metadata.num_row_groups > 5
    seen = {}
    for use_ogr in ("NO", "YES"):
        messages: list[str] = []
        gdal.PushErrorHandler(lambda _cls, _no, msg, messages=messages: messages.append(msg))
        try:
            with gdal.config_options({"CRI_USE_OGR": use_ogr, "CPL_DEBUG": "CRI"}):
                arr = gdal.OpenEx(f'CRI:"{small}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("band_data")
                rows = []
                for level in (arr, arr.GetOverview(0), arr.GetOverview(1)):
                    counts = [-(-s // b) for s, b in zip((d.GetSize() for d in level.GetDimensions()),
                                                          level.GetBlockSize())]
                    rows += [(info.GetOffset(), info.GetSize()) for i in range(counts[0]) for j in range(counts[1])
                             for info in [level.GetRawBlockInfo([i, j])]]
                seen[use_ogr] = (rows, arr.ReadAsArray(array_start_idx=[37, 101], count=[200, 333]))
        finally:
            gdal.PopErrorHandler()
        direct = any("direct row-group reader" in m for m in messages)
        built_with = gdal.GetDriverByName("CRI").GetMetadataItem("CRI_PARQUET_READER")
        assert direct == (use_ogr == "NO" and built_with == "DIRECT"), messages
    assert seen["NO"][0] == seen["YES"][0]
    np.testing.assert_array_equal(seen["NO"][1], seen["YES"][1])
    assert_same(seen["NO"][1], read_all(gdal, tif, (101, 37, 333, 200)))


def test_multidim_array_dims_srs_and_overviews(gdal, cog):
    tif, index = cog
    ds = gdal.OpenEx(f'CRI:"{index}"', gdal.OF_MULTIDIM_RASTER)
    arr = ds.GetRootGroup().OpenMDArray("band_data")
    dims = arr.GetDimensions()
    assert [d.GetName() for d in dims] == ["y", "x"]
    assert [d.GetType() for d in dims] == ["HORIZONTAL_Y", "HORIZONTAL_X"]
    x = dims[1].GetIndexingVariable().ReadAsArray()
    assert x[0] == pytest.approx(440720.0 + 15.0) and x[1] - x[0] == pytest.approx(30.0)
    assert arr.GetSpatialRef().GetAuthorityCode(None) == "32611"
    assert arr.GetBlockSize() == [128, 128]
    assert arr.GetOverviewCount() == 2
    ovr = arr.GetOverview(0)
    assert [d.GetSize() for d in ovr.GetDimensions()] == [150, 250]
    assert_same(arr.ReadAsArray(), gdal.Open(str(tif)).ReadAsArray())


def test_bare_path_opens(gdal, cog):
    tif, index = cog
    ds = gdal.Open(str(index))
    assert ds.GetDriver().ShortName == "CRI"
    assert_same(ds.ReadAsArray(), gdal.Open(str(tif)).ReadAsArray())
    md = gdal.OpenEx(str(index), gdal.OF_MULTIDIM_RASTER)
    assert md.GetRootGroup().GetMDArrayNames()


# --- GetRawBlockInfo equals the source's tile table -------------------------------------


@pytest.mark.parametrize("name", ["zstd-pred2-int16", "band-uint16-pred2", "striped-short-deflate"])
def test_raw_block_info_equals_tiff_tile_table(gdal, synthetic, name):
    tif, index = synthetic[name]
    src = gdal.Open(str(tif))
    arr = gdal.OpenEx(f'CRI:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("band_data")
    nd = len(arr.GetDimensions())
    bx, by = src.GetRasterBand(1).GetBlockSize()
    nbx, nby = -(-COLS // bx), -(-ROWS // by)
    for band in range(1, src.RasterCount + 1):
        for ty in range(nby):
            for tx in range(nbx):
                b = src.GetRasterBand(band)
                off = int(b.GetMetadataItem(f"BLOCK_OFFSET_{tx}_{ty}", "TIFF"))
                size = int(b.GetMetadataItem(f"BLOCK_SIZE_{tx}_{ty}", "TIFF"))
                coords = [ty, tx] if nd == 2 else [band - 1, ty, tx]
                info = arr.GetRawBlockInfo(coords)
                assert info.GetFilename() == str(tif)
                assert (info.GetOffset(), info.GetSize()) == (off, size)
                codec = json.loads(dict(i.split("=", 1) for i in info.GetInfo())["CODEC"])
                assert codec and codec[0]["name"] in ("zstd", "deflate")


# --- HDF5 / NetCDF --------------------------------------------------------------------


@pytest.fixture(scope="module")
def netcdf4d(tmp_path_factory) -> tuple[Path, Path]:
    """A BRAN-like 4-D NetCDF: shuffle + zlib (+ fletcher32), uneven edge chunks,
    one never-written chunk, CF time/depth coordinates."""
    import netCDF4

    root = tmp_path_factory.mktemp("cri-nc")
    path = root / "ocean_temp.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("Time", 3)
        nc.createDimension("st_ocean", 5)
        nc.createDimension("yt_ocean", 37)
        nc.createDimension("xt_ocean", 41)
        t = nc.createVariable("Time", "f8", ("Time",))
        t.units = "days since 1979-01-01 00:00:00"
        t.calendar = "gregorian"
        t[:] = [16071.5, 16072.5, 16073.5]
        z = nc.createVariable("st_ocean", "f8", ("st_ocean",))
        z.units = "meters"
        z.positive = "down"
        z[:] = [2.5, 7.5, 12.5, 17.5, 22.5]
        lat = nc.createVariable("yt_ocean", "f8", ("yt_ocean",))
        lat.units = "degrees_north"
        lat[:] = np.linspace(-40, -30, 37)
        lon = nc.createVariable("xt_ocean", "f8", ("xt_ocean",))
        lon.units = "degrees_east"
        lon[:] = np.linspace(140, 150, 41)
        v = nc.createVariable("temp", "i2", ("Time", "st_ocean", "yt_ocean", "xt_ocean"), zlib=True,
                              shuffle=True, fletcher32=True, chunksizes=(1, 2, 16, 16), fill_value=-32768)
        v.scale_factor = 0.01
        v.add_offset = 20.0
        v.units = "degC"
        v.long_name = "Potential temperature"
        rng = np.random.default_rng(3)
        data = rng.integers(-1000, 1000, size=(3, 5, 37, 41)).astype(np.int16)
        v.set_auto_scale(False)
        v[0] = data[0]
        v[2] = data[2]
        v[1, :, :, :16] = data[1, :, :, :16]  # chunks of x >= 16 at time 1 are never written
    return path, cri_from_hdf5(path, root / "ocean_temp.cri.parquet")


def test_netcdf_4d_multidim_equals_h5py(gdal, netcdf4d):
    import h5py

    path, index = netcdf4d
    ds = gdal.OpenEx(f'CRI:"{index}"', gdal.OF_MULTIDIM_RASTER)
    arr = ds.GetRootGroup().OpenMDArray("temp")
    assert [d.GetName() for d in arr.GetDimensions()] == ["Time", "st_ocean", "yt_ocean", "xt_ocean"]
    with h5py.File(path) as f:
        expected = f["temp"][()]
    got = arr.ReadAsArray()
    assert_same(got, expected)
    assert arr.GetScale() == pytest.approx(0.01) and arr.GetOffset() == pytest.approx(20.0)
    assert arr.GetNoDataValueAsDouble() == -32768
    time = arr.GetDimensions()[0].GetIndexingVariable()
    assert time.ReadAsArray().tolist() == [16071.5, 16072.5, 16073.5]
    assert arr.GetDimensions()[0].GetType() == "TEMPORAL"
    # Strided, reversed read crosses chunk edges.
    sub = arr.ReadAsArray(array_start_idx=[2, 4, 36, 40], count=[2, 3, 10, 9], array_step=[-1, -2, -3, -4])
    assert_same(sub, expected[2::-1, 4::-2, 36::-3, 40::-4][:2, :3, :10, :9])


def test_gdalmdiminfo_shows_4d_array_and_coordinates(gdal, netcdf4d):
    _, index = netcdf4d
    info = json.loads(run("gdalmdiminfo", f'CRI:"{index}"').stdout)
    temp = info["arrays"]["temp"]
    assert temp["dimensions"] == ["/Time", "/st_ocean", "/yt_ocean", "/xt_ocean"]
    assert info["arrays"]["Time"]["attributes"]["units"] == "days since 1979-01-01 00:00:00"
    assert temp["unit"] == "degC"


def test_netcdf_time_step_classic_and_iso_date(gdal, netcdf4d, tmp_path):
    import h5py

    path, index = netcdf4d
    with h5py.File(path) as f:
        expected = f["temp"][2]
    run("gdal_translate", "-q", f'CRI:"{index}":temp:2', str(tmp_path / "t2.tif"))
    assert_same(read_all(gdal, tmp_path / "t2.tif"), expected)  # depth as bands
    run("gdal_translate", "-q", "-oo", "VARIABLE=temp", "-oo", "TIME=2023-01-03", f'CRI:"{index}"',
        str(tmp_path / "d.tif"))
    assert_same(read_all(gdal, tmp_path / "d.tif"), expected)


def h5_reference(path: Path, name: str) -> np.ndarray:
    """The dataset as h5py reads it, its chunks decoded with imagecodecs where
    this h5py has no filter plugin (an implementation independent of GDAL's)."""
    import h5py
    import imagecodecs

    with h5py.File(path) as f:
        d = f[name]
        try:
            return d[()]
        except OSError:
            pass
        plist = d.id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        out = np.full(d.shape, d.fillvalue, d.dtype)
        chunks = []
        d.id.chunk_iter(lambda info: chunks.append(info.chunk_offset))
        for origin in chunks:
            mask, data = d.id.read_direct_chunk(origin)
            for i in reversed(range(len(filters))):
                if mask >> i & 1:
                    continue
                fid = filters[i]
                if fid == 32015:
                    data = imagecodecs.zstd_decode(data)
                elif fid == 32004:
                    data = imagecodecs.lz4h5_decode(data)
                elif fid == 32001:
                    data = imagecodecs.blosc_decode(data)
                elif fid == 2:
                    n = len(data) // d.dtype.itemsize
                    data = np.frombuffer(data, np.uint8).reshape(d.dtype.itemsize, n).T.tobytes()
                else:
                    raise AssertionError(f"no reference decoder for filter {fid}")
            block = np.frombuffer(data, d.dtype).reshape(d.chunks)
            sl = tuple(slice(o, min(o + c, s)) for o, c, s in zip(origin, d.chunks, d.shape, strict=True))
            out[sl] = block[tuple(slice(0, x.stop - x.start) for x in sl)]
        return out


@pytest.mark.parametrize("name", ["hdf5_compression_zstd.h5", "hdf5_compression_lz4.h5",
                                  "hdf5_compression_blosc_lz4_bitshuffle.h5", "hdf5_mali_chunk.h5",
                                  "hdf5_mali_chunk2.h5", "hdf5_mini_blosc.h5", "hdf5_mini_lz4.h5",
                                  "hdf5_mini_shuffle_blosc.h5", "hdf5_mini_shuffle_zstd.h5", "air.nc"])
def test_kerchunk_hdf5_codecs(gdal, tmp_path, name):
    # The mali files have chunks HDF5 stored with an optional filter skipped
    # (filter mask): the index's `skip` column.
    src = KERCHUNK_TESTS / name
    if not src.exists():
        pytest.skip(f"{src} is not present")
    index = cri_from_hdf5(src, tmp_path / f"{src.stem}.cri.parquet")
    root = gdal.OpenEx(f'CRI:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup()
    var = "air" if name.startswith("air") else "data"
    assert_same(root.OpenMDArray(var).ReadAsArray(), h5_reference(src, var))


# --- Real-world COGs ------------------------------------------------------------------

REAL = [
    "cogeotiff__rio-tiler/tests/fixtures/cog.tif",
    "cogeotiff__rio-tiler/tests/fixtures/cog_rgb.tif",
    "cogeotiff__rio-tiler/tests/fixtures/cog_uint8_rgb_mask.tif",
    "cogeotiff__rio-tiler/tests/fixtures/cog_fullearth.tif",
    "cogeotiff__rio-tiler/tests/fixtures/cog_nonearth.tif",
    "cogeotiff__rio-tiler/tests/fixtures/cog_gcps.tif",
    "cogeotiff__rio-tiler/tests/fixtures/my-bucket/pix4d/pix4d_alpha_nodata.tif",
    "cogeotiff__rio-cogeo/tests/fixtures/image_webp.tif",
    "cogeotiff__rio-cogeo/tests/fixtures/image_geos.tif",
    "cogeotiff__rio-cogeo/tests/fixtures/validate/cog_no_offest.tif",
    "lambgeo__docker-lambda/tests/fixtures/cog_webp.tif",
    "blacha__cogeotiff/packages/core/data/rgba8_cog_big.tiff",
    "blacha__cogeotiff/packages/core/data/big.endian.tiff",
    "blacha__cogeotiff/packages/core/data/DEM_BS28_2016_1000_1141.tif",
    "blacha__cogeotiff/packages/core/data/model_transformation.tif",
    "rasterio__rasterio/tests/data/RGB.byte.tif",
    "rasterio__rasterio/tests/data/cogeo.tif",
    "rasterio__rasterio/tests/data/float_nan.tif",
    "rasterio__rasterio/tests/data/rgb_deflate.tif",
    "rasterio__rasterio/tests/data/rotated.tif",
    "opendatacube__odc-geo/tests/data/au-3577.tif",
    "chai2010__tiff/testdata/gdal_autotest/gcore/data/separate_tiled.tif",
    "chai2010__tiff/testdata/gdal_autotest/gcore/data/byte_bigtiff_strip5lines.tif",
    "chai2010__tiff/testdata/gdal_autotest/gcore/data/ycbcr_with_mask.tif",
    "chai2010__tiff/testdata/geotiff/other/erdas_spnad83.tif",
    "locationtech__geotrellis/spark/src/test/resources/cog-layer/stitch-layer/3_6/28.tiff",
    "locationtech__geotrellis/gdal/src/test/resources/vlm/lc8-utm-re-mosaic-expected.tif",
    "developmentseed__titiler/src/titiler/core/tests/fixtures/dem.tif",
    "developmentseed__async-tiff/fixtures/image-tiff/bigtiff/BigTIFFMotorola.tif",
    "useyardstick__soil-data/tests/raster/fixtures/polaris/lat4142_lon-88-87.tif",
    "GeoTIFF__geoblaze/data/gfwfiji_6933_COG_Binary.tif",
    "corteva__rioxarray/test/test_data/input/2d_test.tif",
    "corteva__rioxarray/test/test_data/input/test_rpcs.tif",
]


@pytest.mark.parametrize("rel", REAL, ids=lambda r: r.split("/")[-1])
def test_real_world_cog_pixel_equal(gdal, tmp_path, rel):
    src = REAL_COGS / rel
    if not src.exists():
        pytest.skip(f"{src} is not present")
    index = cri_from_tiff(src, tmp_path / f"{src.stem}.cri.parquet")
    translate_and_compare(gdal, index, src, tmp_path)


def _driver_has_liblerc(gdal) -> bool:
    """Whether the loaded CRI plugin links liblerc (built where liblerc-dev is)."""
    gdal.GetDriverByName("CRI")
    with open("/proc/self/maps") as maps:
        return any("libLerc" in line for line in maps)


def test_lerc_read_or_refused_naming_codec(gdal, tmp_path):
    """LERC decodes through liblerc (or GDAL's MRF driver) pixel-equal to
    GDAL's read of the file; without either, it is refused by name."""
    src = REAL_COGS / "lambgeo__docker-lambda/tests/fixtures/cog_lerc.tif"
    if not src.exists():
        pytest.skip(f"{src} is not present")
    index = cri_from_tiff(src, tmp_path / "lerc.cri.parquet")
    if _driver_has_liblerc(gdal) or gdal.GetDriverByName("MRF") is not None:
        translate_and_compare(gdal, index, src, tmp_path)
        return
    result = run("gdal_translate", "-q", conn(index), str(tmp_path / "x.tif"), check=False)
    if result.returncode == 0:
        assert_same(read_all(gdal, tmp_path / "x.tif"), read_all(gdal, src))
    else:
        assert "lerc" in result.stderr and "not supported" in result.stderr


# --- Remote, GeoPackage, dictionary-encoded ---------------------------------------------


def test_over_http(gdal, synthetic, tmp_path):
    from chunkindex.testing.servers import HttpServer

    tif, _ = synthetic["zstd-pred2-int16"]
    with HttpServer(tif.parent) as server:
        index = cri_from_tiff(tif, tmp_path / "http.cri.parquet", base_url=server.url + "/")
        before = server.requests
        translate_and_compare(gdal, index, tif, tmp_path, window=(0, 0, 500, 300))
        assert server.requests > before


@pytest.mark.network_local
def test_over_s3(gdal, synthetic, tmp_path):
    import boto3

    from chunkindex.testing.servers import MotoS3Server

    tif, _ = synthetic["band-uint16-pred2"]
    with MotoS3Server() as s3:
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="archive")
        client.upload_file(str(tif), "archive", f"cogs/{tif.name}", ExtraArgs={"ACL": "public-read"})
        index = cri_from_tiff(tif, tmp_path / "s3.cri.parquet", base_url="s3://archive/cogs/")
        config = ["--config", "AWS_S3_ENDPOINT", f"127.0.0.1:{s3.port}", "--config", "AWS_HTTPS", "NO",
                  "--config", "AWS_VIRTUAL_HOSTING", "FALSE", "--config", "AWS_NO_SIGN_REQUEST", "YES",
                  "--config", "AWS_REGION", "us-east-1"]
        out = tmp_path / "s3.tif"
        run("gdal_translate", "-q", *config, conn(index), str(out))
        assert_same(read_all(gdal, out), read_all(gdal, tif))
        info = json.loads(run("gdalmdiminfo", *config, "-detailed", f'CRI:"{index}"').stdout)
        assert info["arrays"]["band_data"]["datatype"] == "UInt16"


def test_geopackage_variant(gdal, synthetic, tmp_path):
    tif, index = synthetic["pixel-rgb-pred2-byte"]
    gpkg = tmp_path / "x.cri.gpkg"
    gdal.VectorTranslate(str(gpkg), str(index), format="GPKG", layerName="chunks")
    meta = pq.read_schema(index).metadata[b"cri"].decode()
    ds = gdal.OpenEx(str(gpkg), gdal.OF_VECTOR | gdal.OF_UPDATE)
    ds.GetLayerByName("chunks").SetMetadataItem("cri", meta)
    ds = None
    translate_and_compare(gdal, gpkg, tif, tmp_path)


# --- Bad input ------------------------------------------------------------------------


def _rewrite(index: Path, out: Path, *, meta=None, table=None) -> Path:
    t = table if table is not None else pq.read_table(index)
    m = meta if meta is not None else json.loads(t.schema.metadata[b"cri"])
    pq.write_table(t.replace_schema_metadata({"cri": json.dumps(m)}), out)
    return out


def _translate_error(index: Path, tmp_path: Path) -> str:
    result = run("gdal_translate", "-q", conn(index), str(tmp_path / "bad.tif"), check=False)
    assert result.returncode != 0
    return result.stderr


def test_missing_source_file_named(gdal, synthetic, tmp_path):
    _tif, index = synthetic["deflate-int16"]
    meta = json.loads(pq.read_schema(index).metadata[b"cri"])
    meta["base"] = str(tmp_path / "nowhere") + "/"
    err = _translate_error(_rewrite(index, tmp_path / "m.cri.parquet", meta=meta), tmp_path)
    assert "cannot open source file" in err and "nowhere/deflate-int16.tif" in err


def test_short_read_named(gdal, synthetic, tmp_path):
    tif, index = synthetic["deflate-int16"]
    short = tmp_path / "deflate-int16.tif"
    short.write_bytes(tif.read_bytes()[: tif.stat().st_size // 2])
    meta = json.loads(pq.read_schema(index).metadata[b"cri"])
    meta["base"] = str(tmp_path) + "/"
    err = _translate_error(_rewrite(index, tmp_path / "s.cri.parquet", meta=meta), tmp_path)
    assert "short read" in err and "deflate-int16.tif" in err and "chunk" in err


def test_corrupt_chunk_named(gdal, synthetic, tmp_path):
    tif, index = synthetic["zstd-pred2-int16"]
    bad = tmp_path / "zstd-pred2-int16.tif"
    data = bytearray(tif.read_bytes())
    src_ds = gdal.Open(str(tif))
    off = int(src_ds.GetRasterBand(1).GetMetadataItem("BLOCK_OFFSET_1_1", "TIFF"))
    data[off: off + 16] = b"\x00" * 16
    bad.write_bytes(bytes(data))
    meta = json.loads(pq.read_schema(index).metadata[b"cri"])
    meta["base"] = str(tmp_path) + "/"
    err = _translate_error(_rewrite(index, tmp_path / "c.cri.parquet", meta=meta), tmp_path)
    assert "chunk (1,1)" in err and "corrupt" in err


def test_other_major_version_refused(gdal, synthetic, tmp_path):
    _, index = synthetic["deflate-int16"]
    meta = json.loads(pq.read_schema(index).metadata[b"cri"])
    meta["cri_version"] = "1.0"
    err = _translate_error(_rewrite(index, tmp_path / "v.cri.parquet", meta=meta), tmp_path)
    assert "cri_version 1.0 is not supported" in err


def test_unknown_codec_refused(gdal, synthetic, tmp_path):
    _, index = synthetic["deflate-int16"]
    meta = json.loads(pq.read_schema(index).metadata[b"cri"])
    meta["arrays"]["band_data"]["levels"][0]["codec"] = [{"name": "brotli"}]
    err = _translate_error(_rewrite(index, tmp_path / "u.cri.parquet", meta=meta), tmp_path)
    assert "codec brotli is not supported" in err


def test_not_a_cri_index(gdal, tmp_path):
    import pyarrow as pa

    plain = tmp_path / "plain.cri.parquet"
    pq.write_table(pa.table({"a": [1]}), plain)
    result = run("gdalinfo", f'CRI:"{plain}"', check=False)
    assert result.returncode != 0 and "not a CRI index" in result.stderr


def test_plugin_under_test(gdal):
    """Under `make asan-driver`, the AddressSanitizer build is the one loaded."""
    expected = os.environ.get("CRI_EXPECT_PLUGIN")
    if not expected:
        pytest.skip("not running under tools/test_driver_asan.sh")
    maps = Path("/proc/self/maps").read_text()
    assert expected in maps


def test_doctor_reports_cri_driver(gdal):
    from chunkindex.doctor import DoctorReport, check_cri_driver

    report = DoctorReport()
    check_cri_driver(report)
    assert report.ok
    line = next(x for x in report.lines if "driver CRI" in x)
    assert "present (plugin 0.1.0" in line


# --- The project's CRI writer (issue 10), through `chunkindex index` ---------------------

WRITER_FILES = [
    "rasterio__rasterio/tests/data/RGB.byte.tif",  # short last strip, pixel-interleaved
    "cogeotiff__rio-tiler/tests/fixtures/cog.tif",  # DEFLATE COG with overviews
    "cogeotiff__rio-tiler/tests/fixtures/cog_rgb.tif",  # JPEG YCbCr with JPEGTables
    "chai2010__tiff/testdata/gdal_autotest/gcore/data/separate_tiled.tif",  # big-endian band-separate PackBits
    "corteva__rioxarray/test/test_data/input/test_rpcs.tif",  # LZW + predictor 2 strips
]


@pytest.mark.parametrize("rel", WRITER_FILES, ids=lambda r: r.split("/")[-1])
def test_project_writer_index_pixel_equal(gdal, tmp_path, rel):
    src = REAL_COGS / rel
    if not src.exists():
        pytest.skip(f"{src} is not present")
    done = subprocess.run([sys.executable, "-m", "chunkindex.cli", "index", str(src), "--kinds", "cri-parquet",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    index = next(tmp_path.glob("*.cri.parquet"))
    arr = gdal.OpenEx(f'CRI:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("data")
    dims = [d.GetName() for d in arr.GetDimensions()]
    got = arr.ReadAsArray()[0]  # the one time step
    if dims[-1] == "band":
        got = np.moveaxis(got, -1, 0)
    assert_same(got, read_all(gdal, src))
