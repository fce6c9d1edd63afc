"""NetCDF4/HDF5 archives (BRAN2023-like): one 4-D array from monthly files,
references from h5py's chunk walk identical to GDAL's GetRawBlockInfo, and
values through the index equal to GDAL's reads of the source files."""

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pytest
import yaml
from client_support import gdal_cli
from conftest import REPO, run_snakemake, shared_fixture

from chunkindex.codecs import UnsupportedCodec
from chunkindex.formats.hdf import HdfExtractor
from chunkindex.formats.hdf.assemble import assemble_hdf
from chunkindex.formats.hdf.headers import HdfLayoutError
from chunkindex.pipeline import quick_recipe, run_recipe, store_spec
from chunkindex.sources.listing import list_sources
from chunkindex.testing.servers import HttpServer


def bran_recipe(folder: Path, recipe_id: str = "bran", extractor: str = "hdf5", **extra):
    return quick_recipe(recipe_id, str(folder), fmt="netcdf4", pattern="ocean_temp_{time:%Y}_{time:%m}.nc",
                        variables=("temp",), concat_dim="Time", concat_from="variable",
                        units="days since 1979-01-01 00:00:00", sample_chunks=40,
                        headers={"extractor": extractor}, **extra)


def _source_concat(gdal, files: list[Path]) -> np.ndarray:
    parts = []
    for path in files:
        ds = gdal.OpenEx(str(path), gdal.OF_MULTIDIM_RASTER)
        parts.append(ds.GetRootGroup().OpenMDArray("temp").ReadAsArray())
    return np.concatenate(parts)


def test_bran_demo_workflow(tmp_path, fixtures_root, gdal):
    run_snakemake("--config", "dataset=bran-demo", f"results_dir={tmp_path}")
    validation = json.loads((tmp_path / "bran-demo/validation.json").read_text())
    assert validation["ok"], validation["mismatches"]
    temp = {a["array"]: a for a in validation["arrays"]}["temp"]
    assert temp["refs_checked"] > 0 and temp["pixels_checked_gdal"] > 0 and temp["pixels_checked_zarr"] > 0
    index = tmp_path / "bran-demo/index/bran-demo.parq"
    root = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup()
    arr = root.OpenMDArray("temp")
    assert [d.GetName() for d in arr.GetDimensions()] == ["Time", "st_ocean", "yt_ocean", "xt_ocean"]
    assert [d.GetSize() for d in arr.GetDimensions()] == [31 + 28 + 31, 4, 300, 720]
    assert arr.GetBlockSize() == [1, 1, 300, 300]
    assert arr.GetScale() == 0.007782219909131527 and arr.GetOffset() == 245.0
    assert arr.GetNoDataValueAsDouble() == -32768 and arr.GetUnit() == "degrees C"
    files = sorted((fixtures_root / "bran").glob("ocean_temp_*.nc"))
    start = [0, 40, 0, 0]
    count = [60, 2, 300, 720]
    expected = _source_concat(gdal, files)[0:60, 0:2]
    np.testing.assert_array_equal(arr.ReadAsArray(array_start_idx=start[:1] + [0, 0, 0], count=count), expected)
    time = root.OpenMDArray("Time").ReadAsArray()
    assert time[0] == 16071.5 and np.all(np.diff(time) == 1.0) and time.size == 90
    meta = json.loads((index / ".zmetadata").read_text())["metadata"]
    zattrs = meta["temp/.zattrs"]
    assert zattrs["missing_value"] == -32768 and zattrs["valid_range"] == [-32767, 32767]
    assert zattrs["standard_name"] == "sea_water_potential_temperature"
    # The source's _FillValue is the .zarray fill_value (not an attribute, as in kerchunk's output).
    assert meta["temp/.zarray"]["fill_value"] == -32768 and "_FillValue" not in zattrs
    assert meta["temp/.zarray"]["filters"] == [{"id": "shuffle", "elementsize": 2}]
    assert meta["temp/.zarray"]["compressor"]["id"] == "zlib"
    block = arr.GetRawBlockInfo([31, 2, 0, 1])  # first day of February
    source = gdal.OpenEx(str(files[1]), gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("temp").GetRawBlockInfo([0, 2, 0, 1])
    assert (block.GetFilename(), block.GetOffset(), block.GetSize()) == (str(files[1].resolve()), source.GetOffset(), source.GetSize())
    assert "extraction" in (tmp_path / "bran-demo/report/report.md").read_text()
    _bran_cri_through_gdal_command_line(tmp_path / "bran-demo/index/bran-demo.cri.parquet", expected, tmp_path, gdal)


def _bran_cri_through_gdal_command_line(index: Path, expected: np.ndarray, tmp_path: Path, gdal) -> None:
    """Issue 11 "Done when": gdalmdiminfo shows the demo's 4-D array with its
    coordinates, and gdal_translate of a time step equals the source (no Python reads)."""
    if gdal.GetDriverByName("CRI") is None:
        pytest.fail("the CRI driver plugin is not loaded: run `make setup` (tools/build_driver.sh)")
    info = json.loads(gdal_cli("gdalmdiminfo", f'CRI:"{index}"'))
    temp = info["arrays"]["temp"]
    assert temp["dimensions"] == ["/Time", "/st_ocean", "/yt_ocean", "/xt_ocean"]
    assert temp["dimension_size"] == [90, 4, 300, 720]
    assert (temp["unit"], temp["nodata_value"], temp["offset"]) == ("degrees C", -32768, 245)
    dims = {d["name"]: d for d in info["dimensions"]}
    assert {n: d["type"] for n, d in dims.items()} == {
        "Time": "TEMPORAL", "st_ocean": "VERTICAL", "yt_ocean": "HORIZONTAL_Y", "xt_ocean": "HORIZONTAL_X"}
    for name, d in dims.items():  # every dimension has its coordinate array
        assert name in d["indexing_variable"] and name in info["arrays"]
    assert dims["Time"]["indexing_variable"]["Time"]["unit"] == "days since 1979-01-01 00:00:00"
    out = tmp_path / "bran-day45.tif"  # depth levels become bands; `expected` holds the first two
    gdal_cli("gdal_translate", "-q", "-b", "1", "-b", "2", f'CRI:"{index}":temp:45', str(out))
    np.testing.assert_array_equal(gdal.Open(str(out)).ReadAsArray(), expected[45])


def test_gdal_and_h5py_extractors_give_identical_references(fixtures_root):
    for folder in (fixtures_root / "bran", fixtures_root / "edge-cases/netcdf/uneven"):
        tables = {}
        for extractor in ("hdf5", "gdal"):
            recipe = bran_recipe(folder, extractor=extractor)
            spec = store_spec(recipe, "/")
            tables[extractor] = HdfExtractor().read_batch(recipe, spec, list_sources(recipe, spec))
        for column in ("chunk_number", "offsets", "sizes"):
            assert tables["hdf5"][column].equals(tables["gdal"][column]), (folder, column)
        assert set(tables["gdal"]["extractor"].to_pylist()) == {"gdal"}


def test_gdal_extractor_refuses_files_with_unwritten_chunks(fixtures_root, tmp_path):
    recipe = bran_recipe(fixtures_root / "edge-cases/netcdf/unwritten", extractor="gdal")
    with pytest.raises(HdfLayoutError, match=r"4 of 96 chunks were never written, and GDAL's GetRawBlockInfo"):
        run_recipe(recipe, "/", tmp_path)


def test_never_written_chunks_read_as_fill(fixtures_root, tmp_path, gdal):
    folder = fixtures_root / "edge-cases/netcdf/unwritten"
    result = run_recipe(bran_recipe(folder), "/", tmp_path)
    report = result.validation
    assert {a.array: a for a in report.arrays}["temp"].missing_chunks_checked > 0
    assert any("never written" in note for note in report.notes)
    arr = gdal.OpenEx(f'ZARR:"{result.outputs["kerchunk_parquet"]}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("temp")
    np.testing.assert_array_equal(arr.ReadAsArray(), _source_concat(gdal, sorted(folder.glob("*.nc"))))
    assert (arr.ReadAsArray(array_start_idx=[0, 0, 0, 0], count=[1, 2, 60, 100]) == -32768).all()


def test_uneven_edge_chunks(fixtures_root, tmp_path, gdal):
    folder = fixtures_root / "edge-cases/netcdf/uneven"
    result = run_recipe(bran_recipe(folder), "/", tmp_path)
    arr = gdal.OpenEx(f'ZARR:"{result.outputs["kerchunk_parquet"]}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("temp")
    assert [d.GetSize() for d in arr.GetDimensions()] == [6, 2, 130, 312]
    np.testing.assert_array_equal(arr.ReadAsArray(), _source_concat(gdal, sorted(folder.glob("*.nc"))))


def test_shapes_that_do_not_line_up_are_named(fixtures_root, tmp_path):
    with pytest.raises(HdfLayoutError, match=r"mismatch/ocean_temp_2023_02.nc:temp: shape \(2, 3, 130, 312\) does not line up"):
        run_recipe(bran_recipe(fixtures_root / "edge-cases/netcdf/mismatch"), "/", tmp_path)
    assert not (tmp_path / "bran.parq").exists()


def test_files_concatenate_in_time_order_whatever_the_listing_order(fixtures_root):
    recipe = bran_recipe(fixtures_root / "bran")
    spec = store_spec(recipe, "/")
    manifest = list_sources(recipe, spec)
    headers = HdfExtractor().read_batch(recipe, spec, manifest)
    forward = assemble_hdf(recipe, manifest, headers).arrays[0]
    shuffled = assemble_hdf(recipe, manifest, headers.take(pa.array([2, 0, 1]))).arrays[0]
    urls = lambda a: np.asarray(a.urls, dtype=object)[a.url_index]  # noqa: E731
    np.testing.assert_array_equal(urls(forward), urls(shuffled))
    np.testing.assert_array_equal(forward.offsets, shuffled.offsets)


def test_a_gap_in_time_is_reported_and_an_overlap_refused(fixtures_root, tmp_path):
    folder = tmp_path / "gap"
    folder.mkdir()
    for name in ("ocean_temp_2023_01.nc", "ocean_temp_2023_03.nc"):
        os.symlink(fixtures_root / "bran" / name, folder / name)
    result = run_recipe(bran_recipe(folder), "/", tmp_path / "out")
    assert any("gap in Time between 16101.5 and 16130.5" in n for n in result.summary.notes)
    overlap = tmp_path / "overlap"
    overlap.mkdir()
    os.symlink(fixtures_root / "bran/ocean_temp_2023_01.nc", overlap / "ocean_temp_2023_01.nc")
    os.symlink(fixtures_root / "bran/ocean_temp_2023_01.nc", overlap / "ocean_temp_2023_02.nc")
    with pytest.raises(HdfLayoutError, match="Time overlaps or goes back in time"):
        run_recipe(bran_recipe(overlap), "/", tmp_path / "out2")


def test_offsets_beyond_4_gib_survive(tmp_path, gdal):
    folder = tmp_path / "big"
    folder.mkdir()
    data = np.arange(2 * 3 * 40 * 50, dtype="<i2").reshape(2, 3, 40, 50)
    # A 4 GiB user block puts every chunk past 2^32 (a sparse file: a few kB on disk).
    with h5py.File(folder / "ocean_temp_2023_01.nc", "w", userblock_size=2**32) as h5:
        h5.create_dataset("temp", data=data, chunks=(1, 1, 20, 25), compression="gzip", shuffle=True)
    recipe = quick_recipe("big", str(folder), fmt="hdf5", glob="*.nc", variables=("temp",),
                          concat_dim="none", concat_from="variable", sample_chunks=10)
    result = run_recipe(recipe, "/", tmp_path / "out")
    index = result.outputs["kerchunk_parquet"]
    arr = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("temp")
    assert arr.GetRawBlockInfo([1, 2, 1, 1]).GetOffset() > 2**32
    np.testing.assert_array_equal(arr.ReadAsArray(), data)


KERCHUNK_HDF5 = {
    "hdf5_compression_zstd.h5": None, "hdf5_mini_zstd.h5": None, "hdf5_mini_shuffle_zstd.h5": None,
    "hdf5_compression_lz4.h5": None, "hdf5_mini_lz4.h5": None, "hdf5_compression_blosc_lz4_bitshuffle.h5": None,
    "hdf5_compression_bitshuffle.h5": (UnsupportedCodec, "the HDF5 bitshuffle filter"),
    "hdf5_mali_chunk.h5": (HdfLayoutError, "skip filters"),
    "hdf5_mali_chunk2.h5": (HdfLayoutError, "skip filters"),
    "hdf5_mini_blosc.h5": (HdfLayoutError, "skip filters"),
    "hdf5_mini_shuffle_blosc.h5": (HdfLayoutError, "skip filters"),
    "vlen.h5": (HdfLayoutError, "cannot be indexed .numeric only."),
    "vlen2.h5": (HdfLayoutError, "cannot be indexed .numeric only."),
}


@pytest.mark.parametrize("name", sorted(KERCHUNK_HDF5))
def test_kerchunk_hdf5_files(name, tmp_path):
    path = shared_fixture("kerchunk-tests", name)
    with h5py.File(path) as h5:
        variables = tuple(k for k in h5 if isinstance(h5[k], h5py.Dataset))
    recipe = quick_recipe("h5", str(path.parent), fmt="hdf5", glob=name, variables=variables,
                          concat_dim="none", concat_from="variable", sample_chunks=20)
    expected = KERCHUNK_HDF5[name]
    if expected is None:
        result = run_recipe(recipe, "/", tmp_path)
        assert result.validation.ok
        assert sum(a.pixels_checked_gdal + a.pixels_checked_python for a in result.validation.arrays) > 0
    else:
        with pytest.raises(expected[0], match=expected[1]) as err:
            run_recipe(recipe, "/", tmp_path)
        assert name in str(err.value)


def test_air_nc_with_its_coordinates(tmp_path, gdal):
    path = shared_fixture("kerchunk-tests", "air.nc")
    recipe = quick_recipe("air", str(path.parent), fmt="netcdf4", glob="air.nc", variables=("air", "lat", "lon"),
                          concat_dim="time", concat_from="variable", sample_chunks=10)
    result = run_recipe(recipe, "/", tmp_path)
    root = gdal.OpenEx(f'ZARR:"{result.outputs["kerchunk_parquet"]}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup()
    source = gdal.OpenEx(str(path), gdal.OF_MULTIDIM_RASTER).GetRootGroup()
    for name in ("air", "lat", "lon", "time"):
        np.testing.assert_array_equal(root.OpenMDArray(name).ReadAsArray(), source.OpenMDArray(name).ReadAsArray())


def test_bran_over_http(tmp_path, fixtures_root, gdal):
    with HttpServer(fixtures_root / "bran") as http:
        doc = yaml.safe_load((REPO / "recipes/bran-demo.yaml").read_text())
        doc["id"] = "bran-http"
        doc["source"] = {"url": http.url + "/", "pattern": doc["source"]["pattern"],
                         "template": {"start": "2023-01-01", "end": "2023-03-01", "step": "month"}}
        (tmp_path / "recipes").mkdir()
        (tmp_path / "recipes/bran-http.yaml").write_text(yaml.safe_dump(doc))
        run_snakemake("--config", "dataset=bran-http", f"recipes_dir={tmp_path / 'recipes'}",
                      f"results_dir={tmp_path / 'results'}")
        validation = json.loads((tmp_path / "results/bran-http/validation.json").read_text())
        assert validation["ok"], validation["mismatches"]
        index = tmp_path / "results/bran-http/index/bran-http.parq"
        arr = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("temp")
        assert arr.GetRawBlockInfo([0, 0, 0, 0]).GetFilename() == f"/vsicurl/{http.url}/ocean_temp_2023_01.nc"
        files = sorted((fixtures_root / "bran").glob("*.nc"))
        np.testing.assert_array_equal(arr.ReadAsArray(array_start_idx=[25, 0, 0, 0], count=[10, 4, 300, 720]),
                                      _source_concat(gdal, files)[25:35])


def test_compact_datasets_are_carried_inline(tmp_path, gdal):
    path = tmp_path / "compact.h5"
    with h5py.File(path, "w") as h5:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        h5py.h5d.create(h5.id, b"small", h5py.h5t.STD_I32LE, h5py.h5s.create_simple((4, 5)), dcpl=dcpl)
        h5["small"][...] = np.arange(20, dtype="<i4").reshape(4, 5)
    recipe = quick_recipe("c", str(tmp_path), fmt="hdf5", glob="compact.h5", variables=("small",),
                          concat_dim="none", concat_from="variable")
    result = run_recipe(recipe, "/", tmp_path / "out")
    checked = {a.array: a for a in result.validation.arrays}["small"]
    assert checked.pixels_checked_gdal == 1 and checked.pixels_checked_zarr == 1
    arr = gdal.OpenEx(f'ZARR:"{result.outputs["kerchunk_parquet"]}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("small")
    np.testing.assert_array_equal(arr.ReadAsArray(), np.arange(20).reshape(4, 5))


def test_a_recipe_without_kerchunk_kinds_runs_end_to_end(tmp_path, fixtures_root):
    """Only the CRI index is asked for: the workflow writes it, validates the
    same arrays through a Kerchunk Parquet index of its own, and says so."""
    doc = yaml.safe_load((REPO / "recipes/bran-demo.yaml").read_text())
    doc.update(id="bran-flat", source={"url": str(fixtures_root / "bran"), "pattern": doc["source"]["pattern"]})
    doc["output"]["kinds"] = ["cri-parquet"]
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes/bran-flat.yaml").write_text(yaml.safe_dump(doc))
    run_snakemake("--config", "dataset=bran-flat", f"recipes_dir={tmp_path / 'recipes'}",
                  f"results_dir={tmp_path / 'results'}")
    results = tmp_path / "results/bran-flat"
    assert (results / "index/bran-flat.cri.parquet").is_file()
    assert not (results / "index/bran-flat.parq").exists()
    validation = json.loads((results / "validation.json").read_text())
    assert validation["ok"] and validation["arrays"][0]["refs_checked"] > 0
    assert any("writes no Kerchunk index (cri-parquet)" in note for note in validation["notes"])
    assert (results / "report/report.md").is_file()
    assert (tmp_path / "results/logs/bran-flat/write.log").is_file()  # logs live under results_dir
    assert (tmp_path / "results/benchmarks/bran-flat/write.tsv").is_file()
