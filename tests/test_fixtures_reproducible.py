"""Synthetic fixtures: the workflow generates them, and regenerating from the
same seed gives byte-identical files (checked against the manifest)."""

import datetime as dt

import numpy as np
import pytest
import yaml
from conftest import REPO

from chunkindex.synthetic.manifest import MANIFEST_NAME, FixtureSet, generate_fixture_set, read_manifest

CONFIG = yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.mark.parametrize("name", sorted(n for n, s in CONFIG["fixtures"]["sets"].items() if not s.get("benchmark_only")))
def test_fixture_set_regenerates_byte_identically(name, fixtures_root, tmp_path):
    spec = dict(CONFIG["fixtures"]["sets"][name])
    fixture = FixtureSet(name, spec.pop("kind"), CONFIG["fixtures"]["seed"], spec)
    manifest = generate_fixture_set(fixture, tmp_path / name)
    original = read_manifest(fixtures_root / name / MANIFEST_NAME)
    again = read_manifest(manifest)
    assert original, f"{name}: the workflow wrote an empty manifest"
    assert again == original


def test_a_different_seed_gives_different_files(tmp_path):
    a = generate_fixture_set(FixtureSet("a", "ghrsst-cog", 1, {"scale": 0.01, "count": 1, "variables": ["analysed_sst"]}), tmp_path / "a")
    b = generate_fixture_set(FixtureSet("b", "ghrsst-cog", 2, {"scale": 0.01, "count": 1, "variables": ["analysed_sst"]}), tmp_path / "b")
    assert read_manifest(a) != read_manifest(b)


def test_ghrsst_stand_in_is_faithful(fixtures_root, gdal):
    path = next((fixtures_root / "ghrsst-zstd-pred2").rglob("*_analysed_sst.tif"))
    assert path.name.endswith("090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1_analysed_sst.tif")
    assert path.parent.relative_to(fixtures_root / "ghrsst-zstd-pred2").as_posix() == path.name[:4] + "/" + path.name[4:6] + "/" + path.name[6:8]
    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Int16
    assert band.GetBlockSize() == [512, 512]
    assert band.GetNoDataValue() == -32768
    assert (band.GetScale(), band.GetOffset()) == (0.001, 25.0)
    assert ds.GetSpatialRef().GetAuthorityCode(None) == "4326"
    gt = ds.GetGeoTransform()
    assert gt[0] == pytest.approx(-179.995) and gt[3] == pytest.approx(89.995)
    assert gt[1] == pytest.approx(0.01 / 0.05) and gt[5] == pytest.approx(-0.01 / 0.05)
    assert [round(ds.RasterXSize / band.GetOverview(i).XSize) for i in range(band.GetOverviewCount())] == [2, 4, 8, 16, 32]
    image = ds.GetMetadata("IMAGE_STRUCTURE")
    assert image["COMPRESSION"] == "ZSTD" and image["PREDICTOR"] == "2"
    values = band.ReadAsArray()
    sea = values[values != -32768] * 0.001 + 25
    assert 0.05 < (values == -32768).mean() < 0.6, "a land mask covers part of the globe"
    assert sea.min() >= -2 and sea.max() < 35 and sea.std() > 3
    mask_ds = gdal.Open(str(path).replace("analysed_sst", "mask"))
    assert mask_ds.GetRasterBand(1).DataType == gdal.GDT_Int8
    deflate = gdal.Open(str(path).replace("ghrsst-zstd-pred2", "ghrsst-deflate-pred1"))
    assert deflate.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
    np.testing.assert_array_equal(deflate.GetRasterBand(1).ReadAsArray(), values)


def test_bran_stand_in_is_faithful(fixtures_root):
    import netCDF4

    files = sorted((fixtures_root / "bran").glob("ocean_temp_*.nc"))
    assert [f.name for f in files] == ["ocean_temp_2023_01.nc", "ocean_temp_2023_02.nc", "ocean_temp_2023_03.nc"]
    with netCDF4.Dataset(files[1]) as nc:
        assert nc.dimensions["Time"].isunlimited() and len(nc.dimensions["Time"]) == 28
        temp = nc["temp"]
        assert temp.dimensions == ("Time", "st_ocean", "yt_ocean", "xt_ocean")
        assert temp.dtype == np.int16
        assert temp.chunking() == [1, 1, 300, 300]
        filters = temp.filters()
        assert filters["zlib"] and filters["shuffle"] and filters["complevel"] == 1
        assert temp.scale_factor == 0.007782219909131527 and temp.add_offset == 245.0
        assert temp._FillValue == -32768 and temp.missing_value == -32768
        assert nc["Time"].units == "days since 1979-01-01 00:00:00"
        assert nc["xt_ocean"].dtype == np.float64


def test_edge_cases_are_all_there(fixtures_root):
    tiff = {p.name for p in (fixtures_root / "edge-cases/tiff").iterdir()}
    assert {"multiband-pixel.tif", "multiband-band.tif", "bigtiff.tif", "big-endian.tif", "sparse.tif",
            "striped.tif", "lzw.tif", "uncompressed.tif", "truncated-data.tif", "truncated-header.tif",
            "not-a-tiff.tif"} <= tiff
    netcdf = {p.relative_to(fixtures_root / "edge-cases/netcdf").as_posix()
              for p in (fixtures_root / "edge-cases/netcdf").rglob("*.nc")}
    assert {"uneven/ocean_temp_2023_01.nc", "unwritten/ocean_temp_2023_01.nc",
            "mismatch/ocean_temp_2023_02.nc"} <= netcdf



def test_the_ten_times_ghrsst_archive_is_the_catalogue_scale_set_ten_times():
    """ghrsst-scale-x10 is ghrsst-scale's generator (hard links of one
    full-size COG, whose reproducibility the catalogue-scale set shows) with
    ten times the days: generating it twice at a tiny count would only
    re-encode the 37 MB template."""
    sets = CONFIG["fixtures"]["sets"]
    x10, x1 = dict(sets["ghrsst-scale-x10"]), dict(sets["ghrsst-scale"])
    assert x10.pop("count") == 10 * x1.pop("count") == 86600
    assert x10 == x1


def test_the_full_bran_archive_regenerates_byte_identically_at_a_tiny_size(tmp_path):
    """bran-scale's generator on a tiny grid: the same bytes twice, four
    variables in every monthly file, every chunk written and decoding to the
    constant, Time rewritten per month in the copies."""
    import h5py
    import hdf5plugin  # noqa: F401  registers the Zstandard filter

    spec = dict(CONFIG["fixtures"]["sets"]["bran-scale"])
    kind = spec.pop("kind")
    spec.update(count=3, scale=0.02, depth_levels=2)
    folders = [tmp_path / f"bran-scale-{i}" for i in (1, 2)]
    manifests = [read_manifest(generate_fixture_set(FixtureSet("bran-scale", kind, CONFIG["fixtures"]["seed"], spec),
                                                    folder)) for folder in folders]
    assert manifests[0] == manifests[1]
    assert sorted(manifests[0]) == ["ocean_1994_01.nc", "ocean_1994_02.nc", "ocean_1994_03.nc"]
    assert manifests[0]["ocean_1994_01.nc"] != manifests[0]["ocean_1994_03.nc"]  # same length, other Time
    with h5py.File(folders[0] / "ocean_1994_02.nc") as h5:
        assert [k for k in ("temp", "salt", "u", "v") if k in h5] == ["temp", "salt", "u", "v"]
        temp = h5["temp"]
        assert temp.shape == (28, 2, 30, 72) and temp.chunks == (1, 1, 30, 72)
        assert temp.id.get_num_chunks() == 28 * 2
        values = temp[:]
        assert (values == values.flat[0]).all() and values.flat[0] != -32768
        days_to_1994_02 = (dt.date(1994, 2, 1) - dt.date(1979, 1, 1)).days
        assert h5["Time"][0] == days_to_1994_02 + 0.5 and h5["Time"].shape == (28,)
