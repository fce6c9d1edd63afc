"""Every TIFF feature GDAL reads (issue 15): one synthetic file per feature and
every real-world file, each read pixel-equal to GDAL through the index or
refused with a message naming the feature; the coverage table
(`docs/tiff-coverage.md`) is written from the same results."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from conftest import REPO, SHARED_FIXTURES
from tiff_coverage import PIXEL_EQUAL, READERS, markdown, outcome

from chunkindex.synthetic.tiff_features import FEATURES

KERCHUNK_READERS = ("GDAL via ZARR:", "zarr-python")

# Kerchunk-route refusals, by file: (reader, message pattern). Any file not
# listed reads pixel-equal through zarr-python, and through GDAL's ZARR:
# driver wherever GDAL decodes the codec (else "references only").
SYNTHETIC_REFUSED = {
    "cint16.tif": r"refused: .*left out of the Kerchunk index: complex integer samples \(16-bit integer pairs, "
                  r"GDAL's CInt16\) have no NumPy/Zarr data type; the CRI index \(output kind cri-parquet\) holds",
    "cint32.tif": r"refused: .*complex integer samples \(32-bit integer pairs, GDAL's CInt32\)",
    "short-strip-deflate-pred2.tif": r"refused: .*left out of the Kerchunk index .*: its last chunk along y is stored "
                                     r"short .* the CRI index \(output kind cri-parquet\) holds it",
    "short-strip-none-rgb.tif": r"refused: .*last chunk along y is stored short",
    "short-strip-lzw-band.tif": r"refused: .*last chunk along y is stored short",
    "short-strip-jpeg.tif": r"refused: .*last chunk along y is stored short",
    "short-tiles-none.tif": r"refused: .*last chunk along y is stored short",
    "short-tiles-deflate.tif": r"refused: .*last chunk along y is stored short",
    # imagecodecs' Lerc numcodecs codec returns 0 for LERC no-data (masked)
    # pixels, which GDAL reads as NaN: the validator names it and fails.
    "lerc-nan.tif": r"refused: validation .* \d+ NaN pixels read as 0 \(imagecodecs' Lerc codec decodes LERC "
                    r"no-data pixels as 0; GDAL reads NaN\)",
}


CRI_READERS = ("GDAL via CRI", "Python CRI reader")


def _assert_cri(readers: dict[str, str]) -> None:
    """Every file (synthetic and real-world) reads pixel-equal through both CRI readers."""
    for reader in CRI_READERS:
        assert readers[reader] == PIXEL_EQUAL, f"{reader}: {readers[reader]}"


def _features_root(fixtures_root):
    return fixtures_root / "tiff-features"


@pytest.mark.parametrize("name", sorted(FEATURES))
def test_feature_file(name, fixtures_root, gdal):
    path = _features_root(fixtures_root) / name
    result = outcome(str(path), f"tiff-features/{name}")
    refused = SYNTHETIC_REFUSED.get(name)
    for reader in KERCHUNK_READERS:
        got = result.readers[reader]
        if refused:
            assert re.search(refused, got), f"{reader}: {got}"
        elif reader == "zarr-python":
            assert got.startswith(PIXEL_EQUAL), f"{reader}: {got}"
        else:
            assert got.startswith((PIXEL_EQUAL, "references only")), f"{reader}: {got}"
    _assert_cri(result.readers)


def _real_cogs() -> list[str]:
    root = SHARED_FIXTURES / "real-cogs"
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))


@pytest.mark.slow
@pytest.mark.parametrize("relative", _real_cogs())
def test_real_world_file_through_cri(relative, gdal):
    """Each real-world TIFF reads pixel-equal to GDAL through the CRI driver
    and the Python CRI reader (the run is shared with the coverage table)."""
    result = outcome(str(SHARED_FIXTURES / "real-cogs" / relative), relative)
    _assert_cri(result.readers)


@pytest.mark.slow
def test_coverage_table(fixtures_root, gdal):
    """Write docs/tiff-coverage.md: one row per real-world and synthetic file."""
    real_root = SHARED_FIXTURES / "real-cogs"
    outcomes = [outcome(str(real_root / relative), relative) for relative in _real_cogs()]
    outcomes += [outcome(str(_features_root(fixtures_root) / name), f"tiff-features/{name}")
                 for name in sorted(FEATURES)]
    text = markdown(outcomes)
    (REPO / "docs/tiff-coverage.md").write_text(text)
    assert all(reader in text for reader in READERS)
    assert len(outcomes) == len(FEATURES) + len(_real_cogs())


def test_jpeg_config_carries_tables_and_colour_spaces(fixtures_root, tmp_path, gdal):
    """The .zarray of a YCbCr JPEG COG holds imagecodecs' full Jpeg config."""
    import json

    from chunkindex.pipeline import quick_recipe, run_recipe

    path = _features_root(fixtures_root) / "jpeg-ycbcr.tif"
    run = run_recipe(quick_recipe("one", str(path.parent), glob=path.name), "/", tmp_path)
    meta = json.loads((tmp_path / "one.parq/.zmetadata").read_text())["metadata"]
    compressor = meta["data/.zarray"]["compressor"]
    assert compressor["id"] == "imagecodecs_jpeg"
    assert (compressor["colorspace_jpeg"], compressor["colorspace_data"]) == ("YCbCr", "RGB")
    assert compressor["bitspersample"] == 8
    import tifffile

    with tifffile.TiffFile(path) as tif:
        assert base64.b64decode(compressor["tables"]) == tif.pages[0].jpegtables
    data = {a.array: a for a in run.validation.arrays}["data"]
    assert data.pixels_checked_python > 0 and data.pixels_checked_zarr > 0
    assert any("libjpeg" in d for d in data.decoders)


def test_palette_mask_gcps_rpcs_kept(fixtures_root, tmp_path, gdal):
    """Colour table, internal mask (a `data_mask` variable), GCPs, RPCs and
    PixelIsPoint survive as metadata and arrays, as GDAL reads them."""
    from chunkindex.pipeline import quick_recipe, run_recipe
    from chunkindex.validate import _zarr_group

    root = _features_root(fixtures_root)

    def attrs_of(name):
        run = run_recipe(quick_recipe("one", str(root), glob=name), "/", tmp_path / name)
        group = _zarr_group(tmp_path / name / "one.parq", str(root / name), None)
        return run, group

    _, group = attrs_of("palette.tif")
    palette = gdal.Open(str(root / "palette.tif"))
    table = palette.GetRasterBand(1).GetColorTable()
    expected = [list(table.GetColorEntry(i)) for i in range(table.GetCount())]
    assert group["data"].attrs["color_table"] == expected
    assert group["data"].attrs["color_interpretation"] == ["Palette"]

    run, group = attrs_of("mask.tif")
    source = gdal.Open(str(root / "mask.tif"))
    mask = source.GetRasterBand(1).GetMaskBand().ReadAsArray()
    np.testing.assert_array_equal(group["data_mask"][0] * 255, mask)
    assert {a.array for a in run.validation.arrays} >= {"data", "data_mask"}

    _, group = attrs_of("gcps.tif")
    gcps = gdal.Open(str(root / "gcps.tif")).GetGCPs()
    got = group["data"].attrs["gcps"]
    assert [(g["pixel"], g["line"], g["x"], g["y"]) for g in got] == \
        [(g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY) for g in gcps]

    _, group = attrs_of("rpcs.tif")
    rpc = gdal.Open(str(root / "rpcs.tif")).GetMetadata("RPC")
    got = group["data"].attrs["rpc"]
    for key in ("LINE_OFF", "SAMP_OFF", "LAT_OFF", "LONG_OFF", "HEIGHT_SCALE"):
        assert got[key] == pytest.approx(float(rpc[key].split()[0]))
    assert got["LINE_NUM_COEFF"] == pytest.approx([float(v) for v in rpc["LINE_NUM_COEFF"].split()])

    _, group = attrs_of("pixel-is-point.tif")
    source = gdal.Open(str(root / "pixel-is-point.tif"))
    assert source.GetMetadataItem("AREA_OR_POINT") == "Point"
    assert group["data"].attrs["AREA_OR_POINT"] == "Point"
    gt = source.GetGeoTransform()
    np.testing.assert_allclose(group["x"][:3], gt[0] + (np.arange(3) + 0.5) * gt[1])


@pytest.mark.network_local
def test_short_edges_found_locally_and_over_http(fixtures_root):
    """Short strips from the header, short compressed tiles by decoding one
    edge tile per layout: the same through pread and through HTTP ranges."""
    import os

    from chunkindex.formats.tiff.headers import ReadSettings, read_headers
    from chunkindex.recipe import default_headers
    from chunkindex.sources.stores import StoreSpec, open_store
    from chunkindex.testing.servers import HttpServer

    root = _features_root(fixtures_root)
    names = ["short-tiles-deflate.tif", "short-tiles-none.tif", "short-strip-jpeg.tif",
             "codec-deflate-pred2-le.tif", "jpeg-ycbcr.tif"]
    sizes = [os.path.getsize(root / n) for n in names]
    expected = ["y", "y", "y", None, None]
    settings = ReadSettings.from_recipe(default_headers())
    local = read_headers(open_store(StoreSpec(root.resolve().as_uri())), names, sizes, list(range(len(names))),
                         settings)
    assert local.filter(pc_equal(local["ifd"], 0))["short_edges"].to_pylist() == expected
    with HttpServer(root) as server:
        store = open_store(StoreSpec(server.url, {"client_options": {"allow_http": True}}))
        remote = read_headers(store, names, sizes, list(range(len(names))), settings)
    assert remote.filter(pc_equal(remote["ifd"], 0))["short_edges"].to_pylist() == expected


def pc_equal(column, value):
    import pyarrow.compute as pc

    return pc.equal(column, value)


@pytest.fixture(scope="module")
def cli_cri_indexes(fixtures_root, tmp_path_factory):
    """`chunkindex index FILE --kinds cri-parquet --out DIR` on a real-world
    RGB file and on a file with an internal (1-bit) mask IFD."""
    from chunkindex.cli import main

    out = {}
    for key, path in (("rgb", SHARED_FIXTURES / "real-cogs/rasterio__rasterio/tests/data/RGB.byte.tif"),
                      ("mask", _features_root(fixtures_root) / "mask.tif")):
        if not path.exists():
            pytest.skip(f"{path} is not here")
        folder = tmp_path_factory.mktemp(f"cli-{key}")
        assert main(["index", str(path), "--kinds", "cri-parquet", "--out", str(folder)]) == 0
        (index,) = folder.glob("*.cri.parquet")
        out[key] = (path, index)
    return out


def test_cli_cri_index_opens_multidimensionally(cli_cri_indexes, gdal):
    """The CLI writes one *.cri.parquet for a single TIFF; GDAL opens it as
    CRI:"<index>" with dimensions y/x, and band for a multi-band file; values
    and the internal mask equal GDAL's read of the source."""
    path, index = cli_cri_indexes["rgb"]
    root = gdal.OpenEx(f'CRI:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup()
    array = root.OpenMDArray("data")
    assert [d.GetName() for d in array.GetDimensions()] == ["time", "y", "x", "band"]
    np.testing.assert_array_equal(np.moveaxis(array.ReadAsArray()[0], -1, 0), gdal.Open(str(path)).ReadAsArray())

    path, index = cli_cri_indexes["mask"]
    root = gdal.OpenEx(f'CRI:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup()
    data, mask = root.OpenMDArray("data"), root.OpenMDArray("data_mask")
    source = gdal.Open(str(path))
    dims = [d.GetName() for d in data.GetDimensions()]
    assert dims[1:3] in (["y", "x"], ["lat", "lon"]) and [d.GetName() for d in mask.GetDimensions()] == dims[:3]
    values = data.ReadAsArray()[0]
    np.testing.assert_array_equal(np.moveaxis(values, -1, 0) if dims[-1] == "band" else values, source.ReadAsArray())
    want = source.GetRasterBand(1).GetMaskBand().ReadAsArray()
    assert 0 < (want == 0).sum() < want.size  # the mask masks something
    np.testing.assert_array_equal(mask.ReadAsArray()[0] * 255, want)

    from chunkindex.indexes.flat import CriIndex

    np.testing.assert_array_equal(CriIndex(index).read("data_mask")[0] * 255, want)
