"""`snakemake --config dataset=ghrsst-demo[-deflate]` end to end: the index
GDAL opens holds exact references, and every pixel read through it equals
GDAL's read of the source COGs."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from client_support import gdal_cli
from conftest import REPO, run_snakemake


def _source_stack(gdal, files: list[Path], overview: int | None = None) -> np.ndarray:
    planes = []
    for path in files:
        ds = gdal.Open(str(path))
        band = ds.GetRasterBand(1)
        if overview is not None:
            band = band.GetOverview(overview)
        planes.append(band.ReadAsArray())
    return np.stack(planes)


def _files(fixtures_root: Path, fixture_set: str, variable: str) -> list[Path]:
    return sorted((fixtures_root / fixture_set).rglob(f"*_{variable}.tif"))


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory, fixtures_root):
    results = tmp_path_factory.mktemp("results")
    for dataset in ("ghrsst-demo", "ghrsst-demo-deflate"):
        run_snakemake("--config", f"dataset={dataset}", f"results_dir={results}")
    return results


def test_validation_and_report(demo_results):
    for dataset in ("ghrsst-demo", "ghrsst-demo-deflate"):
        validation = json.loads((demo_results / dataset / "validation.json").read_text())
        assert validation["ok"], validation["mismatches"]
        checked = {a["array"]: a for a in validation["arrays"]}
        assert checked["analysed_sst"]["refs_checked"] > 0
        assert checked["ovr32/analysed_sst"]["refs_checked"] > 0, "every overview level is sampled"
        assert checked["analysed_sst"]["pixels_checked_zarr"] > 0
        report = (demo_results / dataset / "report/report.md").read_text()
        assert "refs/s" in report and "files/s" in report
        assert (demo_results / dataset / "report/steps.png").stat().st_size > 1000
        # Recipes with footprints: the footprint map is in the report.
        assert "![chunk footprints](footprints.png)" in report
        assert (demo_results / dataset / "report/footprints.png").stat().st_size > 10_000
    zstd = json.loads((demo_results / "ghrsst-demo/validation.json").read_text())
    assert {a["array"]: a for a in zstd["arrays"]}["analysed_sst"]["pixels_checked_python"] > 0
    deflate = json.loads((demo_results / "ghrsst-demo-deflate/validation.json").read_text())
    assert {a["array"]: a for a in deflate["arrays"]}["analysed_sst"]["pixels_checked_gdal"] > 0
    report = (demo_results / "ghrsst-demo/report/report.md").read_text()
    assert "REFERENCES ONLY: EVERY PIXEL READ FAILS" in report


def test_gdal_reads_the_deflate_index_exactly(demo_results, fixtures_root, gdal):
    index = demo_results / "ghrsst-demo-deflate/index/ghrsst-demo-deflate.parq"
    ds = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER)
    root = ds.GetRootGroup()
    sst = root.OpenMDArray("analysed_sst")
    files = _files(fixtures_root, "ghrsst-deflate-pred1", "analysed_sst")
    np.testing.assert_array_equal(sst.ReadAsArray(), _source_stack(gdal, files))
    assert [d.GetName() for d in sst.GetDimensions()] == ["time", "lat", "lon"]
    assert sst.GetScale() == 0.001 and sst.GetOffset() == 25.0 and sst.GetNoDataValueAsDouble() == -32768
    assert sst.GetSpatialRef().GetAuthorityCode(None) == "4326"
    assert sst.GetDimensions()[1].GetIndexingVariable().GetName() == "lat"
    ovr4 = root.OpenMDArrayFromFullname("/ovr4/analysed_sst")
    np.testing.assert_array_equal(ovr4.ReadAsArray(), _source_stack(gdal, files, overview=1))
    mask = root.OpenMDArray("mask")
    np.testing.assert_array_equal(mask.ReadAsArray(), _source_stack(gdal, _files(fixtures_root, "ghrsst-deflate-pred1", "mask")))
    times = root.OpenMDArray("time").ReadAsArray()
    np.testing.assert_array_equal(times, [19752, 19753, 19754, 19755])  # 2024-01-30.. in days since 1970
    # The classic 2-D view of one time step carries the source's geotransform.
    classic = gdal.Open(f'ZARR:"{index}":/analysed_sst:0')
    source = gdal.Open(str(files[0]))
    assert classic.GetGeoTransform() == pytest.approx(source.GetGeoTransform())
    block = sst.GetRawBlockInfo([2, 1, 3])
    third = gdal.Open(str(files[2]))
    assert block.GetFilename() == str(files[2].resolve())
    assert block.GetOffset() == int(third.GetRasterBand(1).GetMetadataItem("BLOCK_OFFSET_3_1", "TIFF"))
    assert block.GetSize() == int(third.GetRasterBand(1).GetMetadataItem("BLOCK_SIZE_3_1", "TIFF"))


def test_predictor_2_index_is_honest(demo_results, fixtures_root, gdal):
    import fsspec
    import imagecodecs.numcodecs
    import zarr
    from fsspec.implementations.reference import ReferenceFileSystem
    from zarr.storage import FsspecStore

    imagecodecs.numcodecs.register_codecs(verbose=False)
    index = demo_results / "ghrsst-demo/index/ghrsst-demo.parq"
    meta = json.loads((index / ".zmetadata").read_text())["metadata"]
    chain = meta["analysed_sst/.zarray"]
    assert chain["compressor"]["id"] == "zstd"
    assert chain["filters"][0]["id"] == "imagecodecs_delta", "the predictor is recorded, never dropped"
    variant = meta["refs_only/analysed_sst/.zattrs"]
    assert variant["chunkindex_warning"].startswith("REFERENCES ONLY: EVERY PIXEL READ FAILS")
    assert variant["chunkindex"]["codec"]["filters"][0]["id"] == "imagecodecs_delta"
    # GDAL refuses the true chain, and opens the variant for its references.
    root = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup()
    with pytest.raises(RuntimeError):
        root.OpenMDArray("analysed_sst")
    files = _files(fixtures_root, "ghrsst-zstd-pred2", "analysed_sst")
    block = root.OpenMDArrayFromFullname("/refs_only/analysed_sst").GetRawBlockInfo([3, 0, 0])
    fourth = gdal.Open(str(files[3]))
    assert block.GetOffset() == int(fourth.GetRasterBand(1).GetMetadataItem("BLOCK_OFFSET_0_0", "TIFF"))
    # zarr-python decodes the true chain: every pixel equals GDAL's source read.
    for refs in (str(index), str(demo_results / "ghrsst-demo/index/ghrsst-demo.json")):
        if refs.endswith(".parq"):
            from fsspec.implementations.reference import LazyReferenceMapper

            refs = LazyReferenceMapper(refs, fs=fsspec.filesystem("file"), engine="pyarrow")
        fs = ReferenceFileSystem(refs, remote_protocol="file", asynchronous=True)
        group = zarr.open_group(store=FsspecStore(fs=fs, path="", read_only=True), mode="r", zarr_format=2)
        np.testing.assert_array_equal(group["analysed_sst"][:], _source_stack(gdal, files))
        np.testing.assert_array_equal(group["ovr8/analysed_sst"][:], _source_stack(gdal, files, overview=2))


def test_footprints_and_cri_index(demo_results, gdal):
    out = demo_results / "ghrsst-demo/index"
    for name in ("ghrsst-demo.footprints.parquet", "ghrsst-demo.footprints.gpkg", "ghrsst-demo.footprints.fgb"):
        ds = gdal.OpenEx(str(out / name), gdal.OF_VECTOR)
        layer = ds.GetLayer(0)
        layer.SetAttributeFilter("variable = 'analysed_sst' AND level = 0")
        features = list(layer)
        assert len(features) == 32  # 4 days x 4 x 2 tiles of 512 in 1800 x 900: one row per chunk
        assert len({f.GetGeometryRef().ExportToWkt() for f in features}) == 8  # days share footprints
        assert layer.GetSpatialRef().GetAuthorityCode(None) in ("4326", "CRS84")  # GeoParquet: OGC:CRS84
    import pyarrow.parquet as pq

    from chunkindex.flat import open_index

    cri = open_index(out / "ghrsst-demo.cri.parquet")
    sst = cri.rows("analysed_sst")  # level 0: 4 days x 2 x 4 tiles
    keys = set(zip(sst["c0"].to_pylist(), sst["c1"].to_pylist(), sst["c2"].to_pylist()))
    assert sst.num_rows == 32 and keys >= {(0, 0, 0), (3, 1, 3)}
    assert len(cri.arrays["analysed_sst"].levels) > 1 and pq.read_table(cri.path).num_rows > 32
    validation = json.loads((demo_results / "ghrsst-demo/validation.json").read_text())
    checked = {a["array"]: a for a in validation["arrays"]}
    assert checked["cri:analysed_sst"]["pixels_checked_python"] > 0  # through the CRI reader
    # ... and through GDAL's CRI driver: the report says GDAL decodes ZSTD + predictor 2 that way.
    assert checked["cri:analysed_sst"]["pixels_checked_gdal"] > 0
    assert checked["cri:analysed_sst@level5"]["pixels_checked_gdal"] > 0
    rows = {line.split(" | ")[0].strip("| "): line for line in
            (demo_results / "ghrsst-demo/report/report.md").read_text().split("## Validation")[0].splitlines()
            if line.startswith("| ")}  # the "Arrays and readers" table
    assert "GDAL (CRI driver)" in rows["analysed_sst"] and "GDAL (CRI driver)" in rows["ovr32/analysed_sst"]
    assert "GDAL (CRI driver)" not in rows["refs_only/analysed_sst"]


@pytest.mark.parametrize(("dataset", "fixture_set", "codec"), [
    ("ghrsst-demo", "ghrsst-zstd-pred2", {"COMPRESSION": "ZSTD", "PREDICTOR": "2"}),
    ("ghrsst-demo-deflate", "ghrsst-deflate-pred1", {"COMPRESSION": "DEFLATE"}),
])
def test_cri_demo_index_through_gdal_command_line(demo_results, fixtures_root, gdal, tmp_path, dataset,
                                                  fixture_set, codec):
    """Issue 11 "Done when": the workflow's CRI index, read by gdalinfo and
    gdal_translate, equals GDAL's read of the source COG — locally and over HTTP."""
    import pyarrow.parquet as pq

    from chunkindex.testing.servers import HttpServer

    if gdal.GetDriverByName("CRI") is None:
        pytest.fail("the CRI driver plugin is not loaded: run `make setup` (tools/build_driver.sh)")
    index = demo_results / dataset / "index" / f"{dataset}.cri.parquet"
    day = 2
    source = gdal.Open(str(_files(fixtures_root, fixture_set, "analysed_sst")[day]))
    assert codec.items() <= source.GetMetadata("IMAGE_STRUCTURE").items()  # the real codec, predictor included
    info = json.loads(gdal_cli("gdalinfo", "-json", f'CRI:"{index}":analysed_sst:{day}'))
    assert info["geoTransform"] == pytest.approx(source.GetGeoTransform())
    assert info["size"] == [source.RasterXSize, source.RasterYSize]
    assert 'ID["EPSG",4326]' in info["coordinateSystem"]["wkt"]
    band = info["bands"][0]
    assert (band["type"], band["noDataValue"], band["scale"], band["offset"]) == ("Int16", -32768, 0.001, 25.0)
    assert len(band["overviews"]) == source.GetRasterBand(1).GetOverviewCount()
    window = (300, 100, 900, 700)  # crosses tile edges and the short last tile row and column
    expected = source.ReadAsArray(*window)

    def translated(idx: Path, name: str) -> np.ndarray:
        out = tmp_path / f"{name}.tif"
        gdal_cli("gdal_translate", "-q", "-srcwin", *map(str, window), f'CRI:"{idx}":analysed_sst:{day}', str(out))
        return gdal.Open(str(out)).ReadAsArray()

    np.testing.assert_array_equal(translated(index, "local"), expected)
    table = pq.read_table(index)
    meta = json.loads(table.schema.metadata[b"cri"])
    with HttpServer(Path(meta["base"])) as server:
        meta["base"] = server.url + "/"
        remote = tmp_path / f"{dataset}-http.cri.parquet"
        pq.write_table(table.replace_schema_metadata({"cri": json.dumps(meta)}), remote)
        np.testing.assert_array_equal(translated(remote, "http"), expected)
        assert server.requests > 0


_READ_VRT_WITHOUT_CRI = """
import sys
import numpy as np
from osgeo import gdal
gdal.UseExceptions()
assert gdal.GetDriverByName("CRI") is None, "the CRI plugin is loaded"
root = gdal.OpenEx(sys.argv[1], gdal.OF_MULTIDIM_RASTER).GetRootGroup()
arrays = {}
for name in sys.argv[3:]:
    arr = root.OpenMDArray(name)
    arrays[name] = arr.ReadAsArray()
    arrays[name + "/dims"] = np.array([d.GetName() + ":" + (d.GetType() or "") for d in arr.GetDimensions()])
    arrays[name + "/meta"] = np.array([arr.GetNoDataValueAsDouble() or 0, arr.GetScale() or 1, arr.GetOffset() or 0])
    arrays[name + "/srs"] = np.array([arr.GetSpatialRef().GetAuthorityCode(None)])
arrays["time"] = root.OpenMDArray("time").ReadAsArray()
np.savez(sys.argv[2], **arrays)
"""


@pytest.mark.parametrize(("dataset", "fixture_set"), [("ghrsst-demo", "ghrsst-zstd-pred2"),
                                                      ("ghrsst-demo-deflate", "ghrsst-deflate-pred1")])
def test_vrt_over_the_cogs_read_by_a_gdal_without_the_cri_plugin(demo_results, fixtures_root, gdal, tmp_path,
                                                                 dataset, fixture_set):
    """Issue 11 §4: `<id>.vrt` (time x y x x over the source COGs), opened by a
    GDAL with no plugin at all (GDAL_DRIVER_PATH an empty folder), equals the
    stack of GDAL's reads of the sources."""
    vrt = demo_results / dataset / "index" / f"{dataset}.vrt"
    empty = tmp_path / "no-plugins"
    empty.mkdir()
    out = tmp_path / "read.npz"
    subprocess.run([sys.executable, "-c", _READ_VRT_WITHOUT_CRI, str(vrt), str(out), "analysed_sst", "mask"],
                   check=True, env={**os.environ, "GDAL_DRIVER_PATH": str(empty)}, timeout=300)
    read = np.load(out)
    for variable in ("analysed_sst", "mask"):
        np.testing.assert_array_equal(read[variable], _source_stack(gdal, _files(fixtures_root, fixture_set, variable)))
        assert list(read[f"{variable}/dims"]) == ["time:TEMPORAL", "lat:HORIZONTAL_Y", "lon:HORIZONTAL_X"]
        assert read[f"{variable}/srs"][0] == "4326"
    assert list(read["analysed_sst/meta"]) == [-32768, 0.001, 25.0]
    np.testing.assert_array_equal(read["time"], [19752, 19753, 19754, 19755])


def test_second_run_does_nothing_and_a_new_day_rereads_one_batch(tmp_path, fixtures_root):
    source = tmp_path / "archive"
    shutil.copytree(fixtures_root / "ghrsst-deflate-pred1", source, ignore=shutil.ignore_patterns("MANIFEST*"))
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    doc = yaml.safe_load((REPO / "recipes/ghrsst-demo-deflate.yaml").read_text())
    doc["id"] = "ghrsst-growing"
    doc["source"]["url"] = str(source)
    del doc["source"]["synthetic"]
    doc["headers"]["batch_size"] = 4
    (recipes / "ghrsst-growing.yaml").write_text(yaml.safe_dump(doc))
    config = ["--config", "dataset=ghrsst-growing", f"recipes_dir={recipes}", f"results_dir={tmp_path / 'results'}"]
    first = run_snakemake(*config)
    assert first.stdout.count("localrule headers:") + first.stderr.count("localrule headers:") == 2
    again = run_snakemake(*config)
    assert "Nothing to be done" in again.stdout + again.stderr
    # A new day arrives: only the last batch is read again.
    for variable in ("analysed_sst", "mask"):
        old = next(source.rglob(f"20240202*_{variable}.tif"))
        new = source / "2024/02/03" / old.name.replace("20240202", "20240203")
        new.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(old, new)
    grown = run_snakemake(*config, "--forcerun", "list_sources")
    log = grown.stdout + grown.stderr
    assert log.count("localrule headers:") == 1, log
    assert "wildcards: batch=00002" in log
    assert "batch=00000" not in log and "batch=00001" not in log
    validation = json.loads((tmp_path / "results/ghrsst-growing/validation.json").read_text())
    assert validation["ok"]
    meta = json.loads((tmp_path / "results/ghrsst-growing/index/ghrsst-growing.parq/.zmetadata").read_text())
    assert meta["metadata"]["analysed_sst/.zarray"]["shape"][0] == 5
