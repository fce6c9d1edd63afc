"""`chunkindex info` and `chunkindex refs` on a written index."""

import pytest

from chunkindex.cli import main
from chunkindex.pipeline import quick_recipe, run_recipe


@pytest.fixture(scope="module")
def lzw_index(fixtures_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    recipe = quick_recipe("lzw", str(fixtures_root / "edge-cases/tiff"), glob="sparse.tif", kinds=("kerchunk-parquet", "kerchunk-json"))
    return run_recipe(recipe, "/", out).outputs


def test_info(lzw_index, capsys):
    assert main(["info", lzw_index["kerchunk_parquet"]]) == 0
    out = capsys.readouterr().out
    assert "Kerchunk Parquet" in out
    assert "data('time', 'y', 'x') shape (1, 300, 500) chunks (1, 128, 128) <u2" in out
    assert "GDAL: yes" in out and "references 2" in out and "files referenced: 1" in out


def test_refs(lzw_index, fixtures_root, capsys, gdal):
    assert main(["refs", lzw_index["kerchunk_parquet"], "data", "0,1,2"]) == 0
    path, offset, size = capsys.readouterr().out.split("\t")
    ds = gdal.Open(str(fixtures_root / "edge-cases/tiff/sparse.tif"))
    assert path == str((fixtures_root / "edge-cases/tiff/sparse.tif").resolve())
    assert int(offset) == int(ds.GetRasterBand(1).GetMetadataItem("BLOCK_OFFSET_2_1", "TIFF"))
    assert int(size) == int(ds.GetRasterBand(1).GetMetadataItem("BLOCK_SIZE_2_1", "TIFF"))
    assert main(["refs", lzw_index["kerchunk_json"], "data", "0,1,2"]) == 0
    assert capsys.readouterr().out.split("\t")[1] == offset
    assert main(["refs", lzw_index["kerchunk_parquet"], "data", "0,2,0"]) == 0  # a sparse tile
    assert capsys.readouterr().out.startswith("(inline:")
    assert main(["refs", lzw_index["kerchunk_json"], "data", "0,2,0"]) == 0
    assert "no data: reads as the fill value" in capsys.readouterr().out


def test_errors_are_clear(lzw_index, tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "is not a Kerchunk Parquet index (no .zmetadata)" in capsys.readouterr().err
    assert main(["refs", lzw_index["kerchunk_parquet"], "nosuch", "0,0,0"]) == 2
    assert "has no array 'nosuch'; arrays: data" in capsys.readouterr().err
    assert main(["refs", lzw_index["kerchunk_parquet"], "data", "0,a"]) == 2
    assert "must be integers" in capsys.readouterr().err
