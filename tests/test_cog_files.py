"""Odd and real-world TIFFs: each either indexes with exact references (and
pixels equal to GDAL's reads wherever a reader decodes them) or is refused
with a clear message naming the file and the feature."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_FIXTURES, shared_fixture

from chunkindex.formats.tiff.assemble import LayoutMismatch
from chunkindex.formats.tiff.headers import TiffHeaderError
from chunkindex.indexes.kerchunk import KerchunkRefused
from chunkindex.pipeline import quick_recipe, run_recipe
from chunkindex.sources.listing import ListingError
from chunkindex.validate import ValidationFailed

EDGE_OK = ["multiband-pixel.tif", "multiband-band.tif", "bigtiff.tif", "big-endian.tif", "sparse.tif",
           "lzw.tif", "uncompressed.tif"]
EDGE_REFUSED = {
    "striped.tif": r"data: left out of the Kerchunk index \(.*striped.tif\): its last chunk along y is stored short",
    "truncated-data.tif": r"truncated-data.tif: truncated - IFD 0 tile \d+ ends at byte \d+ but the file has \d+ bytes",
    "truncated-header.tif": r"truncated-header.tif: cannot read the TIFF header: .*truncated",
    "not-a-tiff.tif": r"not-a-tiff.tif: cannot read the TIFF header: not a TIFF file \(it starts with b'<html>",
}


def index_one(path: Path, workdir: Path, sample: int = 50):
    recipe = quick_recipe("one", str(path.parent), glob=path.name, sample_chunks=sample)
    return run_recipe(recipe, "/", workdir)


@pytest.mark.parametrize("name", EDGE_OK)
def test_edge_case_indexes_and_validates(name, fixtures_root, tmp_path, gdal):
    result = index_one(fixtures_root / "edge-cases/tiff" / name, tmp_path)
    report = result.validation
    data = {a.array: a for a in report.arrays}["data"]
    assert data.refs_checked > 0
    assert data.pixels_checked_gdal + data.pixels_checked_python > 0
    assert data.pixels_checked_zarr > 0


def test_sparse_tiles_read_as_fill_in_gdal_and_zarr(fixtures_root, tmp_path, gdal):
    path = fixtures_root / "edge-cases/tiff/sparse.tif"
    result = index_one(path, tmp_path)
    data = {a.array: a for a in result.validation.arrays}["data"]
    assert data.missing_chunks_checked > 0
    index = result.outputs["kerchunk_parquet"]
    arr = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("data")
    got = arr.ReadAsArray()[0]
    src = gdal.Open(str(path))
    np.testing.assert_array_equal(got, src.GetRasterBand(1).ReadAsArray())
    assert (got[128:, :128] == 0).all() and got[:128, :128].any()


def test_pixel_and_band_interleaved_layouts(fixtures_root, tmp_path, gdal):
    pixel = index_one(fixtures_root / "edge-cases/tiff/multiband-pixel.tif", tmp_path / "p")
    band = index_one(fixtures_root / "edge-cases/tiff/multiband-band.tif", tmp_path / "b")
    p = gdal.OpenEx(f'ZARR:"{pixel.outputs["kerchunk_parquet"]}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("data")
    b = gdal.OpenEx(f'ZARR:"{band.outputs["kerchunk_parquet"]}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("data")
    assert [d.GetName() for d in p.GetDimensions()] == ["time", "y", "x", "band"]
    assert [d.GetName() for d in b.GetDimensions()] == ["time", "band", "y", "x"]
    np.testing.assert_array_equal(np.moveaxis(p.ReadAsArray()[0], -1, 0), b.ReadAsArray()[0])
    assert p.GetSpatialRef().GetAuthorityCode(None) == "32755"


@pytest.mark.parametrize("name", sorted(EDGE_REFUSED))
def test_bad_files_are_refused_clearly(name, fixtures_root, tmp_path):
    with pytest.raises((TiffHeaderError, KerchunkRefused), match=EDGE_REFUSED[name]):
        index_one(fixtures_root / "edge-cases/tiff" / name, tmp_path)
    assert not (tmp_path / "one.parq").exists(), "no index is left behind"


def test_lcmap_cogs_index_as_a_time_stack(tmp_path, gdal):
    folder = shared_fixture("kerchunk-tests")
    recipe = quick_recipe("lcmap", str(folder), pattern="lcmap_tiny_cog_{time:%Y}.tif", sample_chunks=40,
                          units="days since 2000-01-01")
    result = run_recipe(recipe, "/", tmp_path)
    assert result.validation.ok
    index = result.outputs["kerchunk_parquet"]
    arr = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("data")
    stack = np.stack([gdal.Open(str(folder / f"lcmap_tiny_cog_{y}.tif")).ReadAsArray() for y in (2019, 2020)])
    np.testing.assert_array_equal(arr.ReadAsArray(), stack)


def _real_cogs() -> list[str]:
    root = SHARED_FIXTURES / "real-cogs"
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))


# Refusals expected for the real-world files, by file: the feature named.
SHORT = "is stored short (a TIFF short last strip or short edge tiles)"
REAL_REFUSED = {
    "blacha__cogeotiff/packages/core/data/DEM_BS28_2016_1000_1141.tif": SHORT,
    "chai2010__tiff/testdata/gdal_autotest/gcore/data/separate_tiled.tif": SHORT,
    "cogeotiff__rio-cogeo/tests/fixtures/image_webp.tif": SHORT,
    "corteva__rioxarray/test/test_data/input/test_rpcs.tif": SHORT,
    "georust__geotiff/resources/austrian_capitals_model_tie_points_pixel_is_point.tif": SHORT,
    "GeoTIFF__geoblaze/data/gfwfiji_6933_COG_Binary.tif": SHORT,
    "rasterio__rasterio/tests/data/RGB.byte.tif": SHORT,
    "rasterio__rasterio/tests/data/rgb_deflate.tif": SHORT,
}


# Files whose every strip is empty (offset 0, size 0); async-tiff cannot open them.
REAL_ALL_EMPTY = {"useyardstick__soil-data/tests/raster/fixtures/polaris/lat4142_lon-88-87.tif"}


@pytest.mark.parametrize("relative", _real_cogs() or ["(no real-cogs fixtures)"])
def test_real_world_tiff(relative, tmp_path):
    path = shared_fixture("real-cogs", relative)
    if relative in REAL_REFUSED:
        with pytest.raises((TiffHeaderError, ValidationFailed, KerchunkRefused)) as err:
            index_one(path, tmp_path, sample=20)
        assert path.name in str(err.value)
        assert REAL_REFUSED[relative] in str(err.value)
        return
    result = index_one(path, tmp_path, sample=20)
    report = result.validation
    assert report.ok
    arrays = {a.array: a for a in report.arrays}
    data = arrays["data"]
    if relative in REAL_ALL_EMPTY:  # every strip empty: every chunk reads as fill, as GDAL reads it
        assert data.refs_checked == 0 and data.missing_chunks_checked > 0
        return
    assert data.refs_checked > 0
    # Some reader decodes every codec here (JPEG through imagecodecs' Jpeg
    # config), and its pixels agreed with GDAL's read of the source.
    assert result.summary.readers["data"]
    assert data.pixels_checked_gdal + data.pixels_checked_python > 0
    assert data.decoders


def test_real_cogs_catalogue_is_covered():
    catalogue = SHARED_FIXTURES / "real-cogs/README.md"
    if not catalogue.exists():
        pytest.skip("no real-cogs catalogue")
    listed = set(re.findall(r"`([^`]+\.tiff?)`", catalogue.read_text()))
    assert listed and listed <= set(_real_cogs())


def _two_cogs(folder: Path, gdal, second_size=(256, 256), second_type=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for day, size in (("20240101", (256, 256)), ("20240102", second_size)):
        ds = gdal.GetDriverByName("MEM").Create("", size[0], size[1], 1, second_type if day == "20240102" and second_type else gdal.GDT_Int16)
        ds.SetGeoTransform((0, 1, 0, 0, 0, -1))
        ds.GetRasterBand(1).Fill(7)
        gdal.Translate(str(folder / f"sst_{day}.tif"), ds, format="COG", creationOptions=["BLOCKSIZE=128", "COMPRESS=DEFLATE"])


def test_files_that_do_not_line_up_are_named(tmp_path, gdal):
    _two_cogs(tmp_path / "src", gdal, second_size=(384, 256))
    recipe = quick_recipe("mixed", str(tmp_path / "src"), pattern="sst_{time:%Y%m%d}.tif")
    with pytest.raises(LayoutMismatch, match=r"sst_20240102.tif: IFD 0 width is 384, but .*sst_20240101.tif has 256"):
        run_recipe(recipe, "/", tmp_path / "out")
    assert not (tmp_path / "out/mixed.parq").exists()
    skipping = quick_recipe("mixed", str(tmp_path / "src"), pattern="sst_{time:%Y%m%d}.tif",
                            source={"on_mismatch": "skip"})
    result = run_recipe(skipping, "/", tmp_path / "out")
    assert any("sst_20240102.tif" in s for s in result.summary.skipped_files)


def test_a_different_dtype_is_named(tmp_path, gdal):
    _two_cogs(tmp_path / "src", gdal, second_type=gdal.GDT_Float32)
    recipe = quick_recipe("mixed", str(tmp_path / "src"), pattern="sst_{time:%Y%m%d}.tif")
    with pytest.raises(LayoutMismatch, match=r"sst_20240102.tif: IFD 0 dtype is '<f4'"):
        run_recipe(recipe, "/", tmp_path / "out")


def test_listing_errors(tmp_path, gdal):
    _two_cogs(tmp_path / "src", gdal)
    empty = quick_recipe("empty", str(tmp_path / "src"), pattern="nothing_{time:%Y%m%d}.tif")
    with pytest.raises(ListingError, match=r"no file under .* matches 'nothing_\{time:%Y%m%d\}.tif'"):
        run_recipe(empty, "/", tmp_path / "out")
    (tmp_path / "src/sst_20241399.tif").write_bytes(b"x")
    bad_date = quick_recipe("bad", str(tmp_path / "src"), pattern="sst_{time:%Y%m%d}.tif")
    with pytest.raises(ListingError, match=r"sst_20241399.tif: cannot parse '20241399' as '%Y%m%d'"):
        run_recipe(bad_date, "/", tmp_path / "out")
    os.remove(tmp_path / "src/sst_20241399.tif")
    (tmp_path / "src/sub").mkdir()
    dup = quick_recipe("dup", str(tmp_path / "src"), pattern="{name}sst_{time:%Y%m%d}.tif")
    (tmp_path / "src/xsst_20240101.tif").write_bytes((tmp_path / "src/sst_20240101.tif").read_bytes())
    with pytest.raises(ListingError, match=r"have the same coordinate \(2024-01-01"):
        run_recipe(dup, "/", tmp_path / "out")
