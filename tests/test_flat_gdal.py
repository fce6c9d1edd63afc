"""The CRI index on the project's fixture archives, checked against GDAL's
read of the sources: the demo recipes (GHRSST ZSTD + predictor 2 with
overviews, DEFLATE, BRAN-like 4-D NetCDF4), the TIFF edge cases, the
real-world COG corpus, and Zarr stores written by GDAL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, SHARED_FIXTURES, shared_fixture

from chunkindex.flat import open_index, write_cri_parquet
from chunkindex.formats import extractor_for
from chunkindex.formats.tiff.source import TiffSource
from chunkindex.indexes.convert import zarr_to_cri
from chunkindex.indexes.flat_validate import validate_cri
from chunkindex.indexes.kerchunk import write_kerchunk_parquet
from chunkindex.pipeline import quick_recipe, store_spec
from chunkindex.recipe import load_recipe
from chunkindex.sources.listing import list_sources


def write_cri_for(recipe, base_dir: Path, target: Path) -> tuple[Path, object]:
    spec = store_spec(recipe, base_dir)
    manifest = list_sources(recipe, spec)
    extractor = extractor_for(recipe.format)
    assembled = extractor.assemble(recipe, manifest, extractor.read_batch(recipe, spec, manifest))
    return write_cri_parquet(assembled, target, files=manifest), assembled


def level0_multiset(index) -> dict[str, list[tuple[str, int, int]]]:
    out = {}
    for name in index.arrays:
        rows = index.rows(name)
        out[name] = sorted(zip([index.resolve(p) for p in rows["path"].to_pylist()], rows["offset"].to_pylist(),
                               rows["length"].to_pylist()))
    return out


@pytest.mark.parametrize("dataset", ["ghrsst-demo", "ghrsst-demo-deflate", "bran-demo"])
def test_demo_recipes_validate_through_the_cri_reader(dataset, fixtures_root, tmp_path, gdal):
    recipe = load_recipe(REPO / "recipes" / f"{dataset}.yaml")
    path, assembled = write_cri_for(recipe, REPO, tmp_path / f"{dataset}.cri.parquet")
    index = open_index(path)
    report = validate_cri(path, extractor_for(recipe.format).source(recipe), recipe.validation.sample_chunks,
                          recipe.validation.seed, recipe.concat.dim)
    assert report.ok, report.summary()
    for result in report.arrays:
        assert result.refs_checked > 0 and result.pixels_checked_python > 0, result
        assert result.pixels_checked_gdal > 0 and "gdal-cri" in result.readers, result  # the CRI driver plugin
    # Level 0 holds exactly the Kerchunk index's references (its `_refs_only` variants aside).
    kerchunk = write_kerchunk_parquet(assembled.arrays, tmp_path / "k.parq", 1000)
    for name, refs in level0_multiset(index).items():
        parts = pa.concat_tables(pq.read_table(p) for p in sorted((kerchunk / name).glob("refs.*.parq")))
        theirs = sorted((p, o, s) for p, o, s in zip(parts["path"].to_pylist(), parts["offset"].to_pylist(),
                                                     parts["size"].to_pylist()) if p is not None)
        assert refs == theirs, name
    if dataset == "ghrsst-demo":  # overviews are levels of their variable, not arrays
        assert set(index.arrays) == {"analysed_sst", "mask"}
        assert len(index.arrays["analysed_sst"].levels) > 1


def test_validation_through_the_cri_driver_catches_a_dropped_predictor(fixtures_root, tmp_path, gdal):
    """An index whose decode chain lost the TIFF predictor: GDAL's CRI driver
    (and the Python reader) decode other pixels, named as mismatches."""
    import json

    recipe = load_recipe(REPO / "recipes" / "ghrsst-demo.yaml")
    path, _ = write_cri_for(recipe, REPO, tmp_path / "g.cri.parquet")
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"cri"])
    for level in meta["arrays"]["analysed_sst"]["levels"]:
        level["codec"] = [step for step in level["codec"] if step["name"] != "tiff_predictor"]
    pq.write_table(table.replace_schema_metadata({"cri": json.dumps(meta)}), path)
    report = validate_cri(path, extractor_for(recipe.format).source(recipe), 4, 7, "time")
    whats = {(m.array.split("@")[0], m.what) for m in report.mismatches}
    assert ("analysed_sst", "pixels through GDAL's CRI driver vs the source") in whats
    assert ("analysed_sst", "pixels through the CRI reader vs the source") in whats
    assert not any(m.array.startswith("mask") for m in report.mismatches)


def test_ghrsst_demo_whole_levels_equal_gdal(fixtures_root, tmp_path, gdal):
    """Every level of the last day, whole, through the reader vs GDAL's read of the COG and its overviews."""
    recipe = load_recipe(REPO / "recipes" / "ghrsst-demo.yaml")
    path, _ = write_cri_for(recipe, REPO, tmp_path / "g.cri.parquet")
    index = open_index(path)
    files = sorted((fixtures_root / "ghrsst-zstd-pred2").rglob("*_analysed_sst.tif"))
    source = gdal.Open(str(files[-1]))
    band = source.GetRasterBand(1)
    array = index.arrays["analysed_sst"]
    last = array.shape[0] - 1
    for level, meta in sorted(array.levels.items()):
        expected = band.ReadAsArray() if level == 0 else band.GetOverview(level - 1).ReadAsArray()
        got = index.read("analysed_sst", (last,), level)[0]
        assert got.shape == tuple(meta["shape"][1:]) == expected.shape
        np.testing.assert_array_equal(got, expected)
        gt = meta["geotransform"]
        full_gt = source.GetGeoTransform()
        assert gt[0] == pytest.approx(full_gt[0]) and gt[1] == pytest.approx(full_gt[1] * array.shape[2] / expected.shape[1])


EDGE_OK = ["multiband-pixel.tif", "multiband-band.tif", "bigtiff.tif", "big-endian.tif", "sparse.tif",
           "lzw.tif", "uncompressed.tif"]


@pytest.mark.parametrize("name", EDGE_OK)
def test_edge_case_tiffs_through_the_cri_reader(name, fixtures_root, tmp_path, gdal):
    source = fixtures_root / "edge-cases/tiff" / name
    recipe = quick_recipe("one", str(source.parent), glob=source.name)
    path, _ = write_cri_for(recipe, Path("/"), tmp_path / "one.cri.parquet")
    report = validate_cri(path, TiffSource(recipe), 50, 0)
    assert report.ok, report.summary()
    data = {r.array: r for r in report.arrays}["data"]
    assert data.pixels_checked_python > 0
    if name == "sparse.tif":
        assert data.missing_chunks_checked > 0
    dataset = gdal.Open(str(source))
    values = open_index(path).read("data", (0,))[0]
    expected = dataset.ReadAsArray()
    if values.ndim == 3 and values.shape[-1] == dataset.RasterCount:  # pixel-interleaved: (y, x, band)
        expected = np.moveaxis(expected, 0, -1)
    np.testing.assert_array_equal(values, expected)


def _real_cogs() -> list[str]:
    root = SHARED_FIXTURES / "real-cogs"
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))


@pytest.mark.slow
@pytest.mark.parametrize("relative", _real_cogs() or ["(no real-cogs fixtures)"])
def test_real_world_tiffs_through_the_cri_reader(relative, tmp_path, gdal):
    """Every real-world TIFF the indexer accepts reads pixel-equal to GDAL
    through the CRI reader (JPEG, LZW, WebP and predictors included)."""
    from chunkindex.formats.tiff.headers import TiffHeaderError

    source = shared_fixture("real-cogs", relative)
    recipe = quick_recipe("one", str(source.parent), glob=source.name)
    try:
        path, _ = write_cri_for(recipe, Path("/"), tmp_path / "one.cri.parquet")
    except TiffHeaderError as refused:  # refused by the header reader (issue 15 lifts these)
        pytest.skip(f"refused by the indexer: {refused}")
    report = validate_cri(path, TiffSource(recipe), 20, 0)
    assert report.ok, report.summary()


@pytest.mark.parametrize("fmt", ["ZARR_V2", "ZARR_V3"])
def test_zarr_store_written_by_gdal(tmp_path, gdal, fmt):
    rng = np.random.default_rng(2)
    values = rng.integers(0, 30000, (2, 90, 130)).astype(np.uint16)
    driver = gdal.GetDriverByName("Zarr")
    store = tmp_path / "gdal.zarr"
    ds = driver.CreateMultiDimensional(str(store), options=[f"FORMAT={fmt}"])
    root = ds.GetRootGroup()
    dims = [root.CreateDimension(n, None, None, s) for n, s in (("time", 2), ("y", 90), ("x", 130))]
    array = root.CreateMDArray("v", dims, gdal.ExtendedDataType.Create(gdal.GDT_UInt16),
                               ["BLOCKSIZE=1,32,32", "COMPRESS=ZLIB" if fmt == "ZARR_V2" else "COMPRESS=GZIP"])
    array.Write(values)
    del array, root, ds
    index = open_index(zarr_to_cri(str(store), tmp_path / "z.cri.parquet"))
    np.testing.assert_array_equal(index.read("v"), values)
    ds = gdal.OpenEx(str(store), gdal.OF_MULTIDIM_RASTER)
    np.testing.assert_array_equal(index.read("v"), ds.GetRootGroup().OpenMDArray("v").ReadAsArray())


@pytest.mark.parametrize("bands", [3, 1])
def test_jpeg_cogs_with_shared_tables(tmp_path, gdal, bands):
    """JPEG COGs as GDAL writes them (shared JPEGTables; YCbCr for RGB): the
    decode chain carries the tables and colour space, and the reader's pixels
    equal GDAL's exactly (both decode with libjpeg-turbo)."""
    y, x = np.mgrid[0:300, 0:500]
    image = np.stack([(x * 0.5) % 256, (y * 0.8) % 256, ((x + y) * 0.3) % 256]).astype("u1")[:bands]
    mem = gdal.GetDriverByName("MEM").Create("", 500, 300, bands, gdal.GDT_Byte)
    for band in range(bands):
        mem.GetRasterBand(band + 1).WriteArray(image[band])
    gdal.GetDriverByName("COG").CreateCopy(str(tmp_path / "j.tif"), mem, options=[
        "COMPRESS=JPEG", "BLOCKSIZE=128", "OVERVIEWS=NONE"])
    recipe = quick_recipe("one", str(tmp_path), glob="j.tif")
    path, _ = write_cri_for(recipe, Path("/"), tmp_path / "j.cri.parquet")
    index = open_index(path)
    (step,) = index.document["arrays"]["data"]["levels"][0]["codec"]
    assert step["name"] == "jpeg" and step["tables"] and step.get("colorspace") == ("YCbCr" if bands == 3 else "GRAY")
    expected = gdal.Open(str(tmp_path / "j.tif")).ReadAsArray()
    got = index.read("data", (0,))[0]
    np.testing.assert_array_equal(got, np.moveaxis(expected, 0, -1) if bands == 3 else expected)
    report = validate_cri(path, TiffSource(recipe), 10, 0)
    assert report.ok, report.summary()


def test_cri_validation_catches_a_wrong_reference(fixtures_root, tmp_path, gdal):
    """The CRI check is shown to catch what it checks: one row's offset moved
    by a byte fails both the reference and the pixel comparison."""
    recipe = load_recipe(REPO / "recipes" / "ghrsst-demo-deflate.yaml")
    path, _ = write_cri_for(recipe, REPO, tmp_path / "d.cri.parquet")
    table = pq.read_table(path)
    offsets = table["offset"].to_numpy().copy()
    offsets[:] += 1  # every reference off by one byte
    metadata = pq.ParquetFile(path).metadata.metadata
    broken = table.set_column(table.schema.get_field_index("offset"), "offset", pa.array(offsets))
    pq.write_table(broken.replace_schema_metadata(metadata), tmp_path / "broken.cri.parquet")
    report = validate_cri(tmp_path / "broken.cri.parquet", extractor_for(recipe.format).source(recipe), 5, 0,
                          recipe.concat.dim)
    assert not report.ok
    assert any(m.what == "(offset, length)" for m in report.mismatches)


@pytest.mark.parametrize("dataset", ["ghrsst-demo", "bran-demo"])
def test_the_gdal_cri_driver_reads_what_we_write(dataset, fixtures_root, tmp_path, gdal):
    """Interoperability with the GDAL CRI driver (issue 11), written from the
    spec alone: it reads our files as the Python reader does."""
    if gdal.GetDriverByName("CRI") is None:
        pytest.skip("the GDAL CRI driver plugin is not installed")
    recipe = load_recipe(REPO / "recipes" / f"{dataset}.yaml")
    path, _ = write_cri_for(recipe, REPO, tmp_path / f"{dataset}.cri.parquet")
    ours = open_index(path)
    root = gdal.OpenEx(f'CRI:"{path}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup()
    for name, array in ours.arrays.items():
        theirs = root.OpenMDArray(name)
        assert [d.GetName() for d in theirs.GetDimensions()] == array.dims
        np.testing.assert_array_equal(theirs.ReadAsArray(), ours.read(name))
        chunk = tuple(g - 1 for g in (-(-s // c) for s, c in zip(array.shape, array.level(0)["chunk_shape"])))
        assert theirs.GetRawBlockInfo(list(chunk)).GetOffset() == ours.refs(name, chunk)["offset"]
