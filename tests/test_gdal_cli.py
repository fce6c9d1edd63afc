"""Issue 16 §3: the demo indexes read as a GDAL client reads them, with GDAL's
command-line tools only (no Python on the index's read path): `gdalinfo`
and `gdalmdiminfo` report what the source reports, and `gdal_translate` of
a window and `gdalmdimtranslate -subset` give the source's values. The
tools' outputs are compared here with the same window taken from the source
by the same tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from client_support import bran_files, cog_files

BIN = Path(sys.executable).parent


def tool(*args: str) -> str:
    """Run one GDAL command-line tool (from the environment's GDAL) and return stdout."""
    exe = BIN / args[0]
    if not exe.exists():
        pytest.skip(f"{exe} is not installed")
    result = subprocess.run([str(exe), *args[1:]], capture_output=True, text=True,
                            env={**os.environ, "CPL_DEBUG": "OFF"}, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stderr[-3000:]}"
    return result.stdout


def band_info(info: dict) -> dict:
    band = info["bands"][0]
    return {k: band.get(k) for k in ("type", "noDataValue", "scale", "offset", "unit", "block")}


@pytest.mark.parametrize("dataset,fixture_set", [("ghrsst-demo-deflate", "ghrsst-deflate-pred1"),
                                                 ("ghrsst-demo", "ghrsst-zstd-pred2")])
def test_gdalinfo_on_the_ghrsst_index_matches_the_source(dataset, fixture_set, demo_indexes, fixtures_root):
    index = demo_indexes[dataset]
    source = cog_files(fixtures_root, fixture_set, "analysed_sst")[1]
    name = "analysed_sst" if dataset.endswith("deflate") else "refs_only/analysed_sst"
    got = json.loads(tool("gdalinfo", "-json", f'ZARR:"{index}":/{name}:1'))
    want = json.loads(tool("gdalinfo", "-json", str(source)))
    assert band_info(got) == band_info(want)
    assert band_info(got)["unit"] == "celsius"
    assert got["geoTransform"] == pytest.approx(want["geoTransform"])
    assert got["size"] == want["size"]
    assert got["coordinateSystem"]["wkt"].startswith("GEOGCRS[\"WGS 84\"")
    assert want["coordinateSystem"]["wkt"].startswith("GEOGCRS[\"WGS 84\"")


def test_gdalmdiminfo_shows_units_and_dimension_types(demo_indexes, fixtures_root):
    ghrsst = json.loads(tool("gdalmdiminfo", f'ZARR:"{demo_indexes["ghrsst-demo-deflate"]}"'))
    sst = ghrsst["arrays"]["analysed_sst"]
    assert sst["unit"] == "celsius"
    types = {d["name"]: d.get("type") for d in ghrsst["dimensions"]}
    assert types["time"] == "TEMPORAL" and types["lat"] == "HORIZONTAL_Y" and types["lon"] == "HORIZONTAL_X"

    bran = json.loads(tool("gdalmdiminfo", f'ZARR:"{demo_indexes["bran-demo"]}"'))
    source = json.loads(tool("gdalmdiminfo", str(bran_files(fixtures_root)[0])))
    got_dims = {d["name"]: (d.get("type"), d.get("direction")) for d in bran["dimensions"]}
    want_dims = {d["name"]: (d.get("type"), d.get("direction")) for d in source["dimensions"]}
    assert got_dims == want_dims, (got_dims, want_dims)
    assert got_dims["st_ocean"] == ("VERTICAL", "DOWN") and got_dims["Time"][0] == "TEMPORAL"
    temp, src_temp = bran["arrays"]["temp"], source["arrays"]["temp"]
    for key in ("unit", "nodata_value", "scale", "offset", "datatype"):
        assert temp.get(key) == src_temp.get(key), key
    # (GDAL's netCDF driver turns missing_value into the nodata value and does not list it.)
    for attr in ("long_name", "standard_name", "valid_range", "cell_methods"):
        assert temp["attributes"][attr] == src_temp["attributes"][attr], attr


def _read_raw(path: Path) -> np.ndarray:
    from osgeo import gdal

    gdal.UseExceptions()
    return gdal.Open(str(path)).ReadAsArray()


def test_gdal_translate_window_equals_the_source_window(demo_indexes, fixtures_root, tmp_path):
    index = demo_indexes["ghrsst-demo-deflate"]
    source = cog_files(fixtures_root, "ghrsst-deflate-pred1", "analysed_sst")[3]
    window = ["-srcwin", "700", "300", "600", "350"]
    tool("gdal_translate", "-q", *window, f'ZARR:"{index}":/analysed_sst:3', str(tmp_path / "index.tif"))
    tool("gdal_translate", "-q", *window, str(source), str(tmp_path / "source.tif"))
    got, want = _read_raw(tmp_path / "index.tif"), _read_raw(tmp_path / "source.tif")
    assert got.shape == (350, 600)
    np.testing.assert_array_equal(got, want)
    got_info = json.loads(tool("gdalinfo", "-json", str(tmp_path / "index.tif")))
    want_info = json.loads(tool("gdalinfo", "-json", str(tmp_path / "source.tif")))
    assert band_info(got_info) == band_info(want_info)
    assert got_info["geoTransform"] == pytest.approx(want_info["geoTransform"])


def test_gdalmdimtranslate_subset_equals_the_source_subset(demo_indexes, fixtures_root, tmp_path):
    index = demo_indexes["bran-demo"]
    february = bran_files(fixtures_root)[1]
    # 10-12 February 2023 (16111.5.. days since 1979-01-01), two depths, a lat/lon box.
    subset = ["-subset", "Time(16111,16114)", "-subset", "st_ocean(5,15)",
              "-subset", "yt_ocean(-20,10)", "-subset", "xt_ocean(100,160)"]
    tool("gdalmdimtranslate", "-array", "temp", *subset, f'ZARR:"{index}"', str(tmp_path / "index.nc"))
    tool("gdalmdimtranslate", "-array", "temp", *subset, str(february), str(tmp_path / "source.nc"))
    from osgeo import gdal

    gdal.UseExceptions()
    got = gdal.OpenEx(str(tmp_path / "index.nc"), gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("temp")
    want = gdal.OpenEx(str(tmp_path / "source.nc"), gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("temp")
    assert [d.GetSize() for d in got.GetDimensions()] == [d.GetSize() for d in want.GetDimensions()] == [3, 2, 60, 120]
    np.testing.assert_array_equal(got.ReadAsArray(), want.ReadAsArray())
    for d_got, d_want in zip(got.GetDimensions(), want.GetDimensions()):
        np.testing.assert_array_equal(d_got.GetIndexingVariable().ReadAsArray(),
                                      d_want.GetIndexingVariable().ReadAsArray())
