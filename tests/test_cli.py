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


def test_index_one_tiff_file_then_validate(fixtures_root, tmp_path, capsys, gdal):
    """Issue 15's contract: `chunkindex index PATH --kinds ... --out DIR` on one TIFF."""
    source = fixtures_root / "edge-cases/tiff/sparse.tif"
    assert main(["index", str(source), "--kinds", "kerchunk-parquet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "format: cog" in out and "glob: sparse.tif" in out  # the inferred recipe, printed
    assert "indexed 1 file: " in out
    index = tmp_path / "sparse.parq"
    arr = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("data")
    expected = gdal.Open(str(source)).ReadAsArray()
    assert (arr.ReadAsArray()[0] == expected).all()
    assert main(["validate", str(index)]) == 0  # finds the recipe saved beside the index
    assert ": OK" in capsys.readouterr().out


def test_index_a_netcdf_folder_infers_variables_and_time(fixtures_root, tmp_path, capsys):
    assert main(["index", str(fixtures_root / "bran"), "--out", str(tmp_path), "--validate"]) == 0
    out = capsys.readouterr().out
    assert "format: netcdf4" in out and "dim: Time" in out and "from: variable" in out
    assert "- name: temp" in out and ": OK" in out
    from chunkindex import load_recipe

    assert load_recipe(tmp_path / "bran.yaml").concat.dim == "Time"  # the saved recipe runs as it is


def test_index_without_a_kerchunk_kind_says_what_validation_checked(fixtures_root, tmp_path, capsys):
    assert main(["index", str(fixtures_root / "edge-cases/tiff/sparse.tif"), "--kinds", "cri-parquet",
                 "--out", str(tmp_path), "--validate", "-q"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "sparse.cri.parquet").is_file()
    assert "writes no Kerchunk index (cri-parquet)" in out and "through a Kerchunk Parquet index" in out


def test_index_errors_are_clear(tmp_path, capsys):
    assert main(["index", str(tmp_path / "nothing-here"), "--out", str(tmp_path)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["index", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "no TIFF, NetCDF or HDF5 file found" in capsys.readouterr().err
    assert main(["index", str(tmp_path), "--format", "cog", "--kinds", "no-such-kind"]) == 2
    assert "field output.kinds: unknown 'no-such-kind'" in capsys.readouterr().err


def test_inferred_recipes_follow_the_schema(fixtures_root):
    """`infer_recipe` skips jsonschema for speed: what it builds must pass it."""
    from chunkindex.infer import infer_recipe_document
    from chunkindex.recipe import load_schema, validate_document

    docs = [infer_recipe_document(str(fixtures_root / "bran"), kinds=("kerchunk-parquet", "cri-parquet")),
            infer_recipe_document(str(fixtures_root / "edge-cases/tiff/sparse.tif")),
            infer_recipe_document(str(fixtures_root / "ghrsst-deflate-pred1"), variables=("analysed_sst",),
                                  pattern="{time:%Y}/{time:%m}/{time:%d}/{time:%Y%m%d}090000-{name}_{variable}.tif")]
    for doc in docs:
        validate_document(doc, load_schema("recipe"), "inferred")
