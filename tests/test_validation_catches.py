"""Validation is shown to fail: each corruption of a written index is
reported as a mismatch naming the array and the chunk (a chunk that cannot
be read or decoded too, never a bare exception)."""

import dataclasses
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chunkindex.pipeline import quick_recipe, run_recipe, validate_recipe_index
from chunkindex.validate import ValidationFailed

PATTERN = "{time:%Y}/{time:%m}/{time:%d}/{time:%Y%m%d}090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1_{variable}.tif"


@pytest.fixture(scope="module")
def written(fixtures_root, tmp_path_factory):
    """A valid index of 4 daily DEFLATE COGs; every chunk is sampled."""
    recipe = quick_recipe("catch", str(fixtures_root / "ghrsst-deflate-pred1"), pattern=PATTERN,
                          variables=("analysed_sst", "mask"), units="days since 1970-01-01", sample_chunks=1000)
    recipe = dataclasses.replace(recipe, output=dataclasses.replace(recipe.output, overviews=False),
                                 validation=dataclasses.replace(recipe.validation, second_reader=False))
    result = run_recipe(recipe, "/", tmp_path_factory.mktemp("valid"))
    assert result.validation.ok
    return recipe, result.index


def _copy(written, tmp_path):
    recipe, index = written
    target = tmp_path / "index.parq"
    shutil.copytree(index, target)
    return recipe, target


def _edit_refs(index, array, edit):
    path = index / array / "refs.0.parq"
    table = pq.read_table(path)
    columns = table.to_pydict()
    edit(columns)
    # The edits may null any column (the writer declares offset and size required).
    schema = pa.schema([field.with_nullable(True) for field in table.schema])
    pq.write_table(pa.table(columns, schema=schema), path)


def _edit_zarray(index, array, **changes):
    doc = json.loads((index / ".zmetadata").read_text())
    doc["metadata"][f"{array}/.zarray"].update(changes)
    (index / ".zmetadata").write_text(json.dumps(doc))


def _mismatches(recipe, index):
    with pytest.raises(ValidationFailed) as failed:
        validate_recipe_index(recipe, index)
    return failed.value.report.mismatches


def _named(mismatches, array, chunk, what):
    found = [m for m in mismatches if m.array == array and m.chunk == chunk and what in m.what]
    assert found, "\n".join(f"{m.array} {m.chunk} {m.what}: {m.expected} / {m.got}" for m in mismatches)
    return found[0]


def test_shifted_offset(written, tmp_path):
    recipe, index = _copy(written, tmp_path)
    _edit_refs(index, "analysed_sst", lambda c: c["offset"].__setitem__(0, c["offset"][0] + 1))
    _named(_mismatches(recipe, index), "analysed_sst", "0.0.0", "offset/size vs the source's own table")


def test_two_chunks_swapped(written, tmp_path):
    recipe, index = _copy(written, tmp_path)

    def swap(c):
        for name in ("path", "offset", "size"):
            c[name][0], c[name][1] = c[name][1], c[name][0]

    _edit_refs(index, "analysed_sst", swap)
    found = _mismatches(recipe, index)
    _named(found, "analysed_sst", "0.0.0", "offset/size vs the source's own table")
    _named(found, "analysed_sst", "0.0.1", "offset/size vs the source's own table")


def test_path_of_another_day(written, tmp_path):
    recipe, index = _copy(written, tmp_path)

    def other_day(c):
        c["path"][0] = next(p for p in c["path"] if p and p != c["path"][0])

    _edit_refs(index, "analysed_sst", other_day)
    mismatch = _named(_mismatches(recipe, index), "analysed_sst", "0.0.0", "the file of the chunk")
    assert "the file's name gives time" in mismatch.got


def test_path_of_another_variable(written, tmp_path):
    recipe, index = _copy(written, tmp_path)
    _edit_refs(index, "analysed_sst", lambda c: c["path"].__setitem__(0, c["path"][0].replace("analysed_sst", "mask")))
    mismatch = _named(_mismatches(recipe, index), "analysed_sst", "0.0.0", "the file of the chunk")
    assert "holds variable 'mask'" in mismatch.got


def test_path_that_does_not_exist(written, tmp_path):
    recipe, index = _copy(written, tmp_path)
    _edit_refs(index, "analysed_sst", lambda c: c["path"].__setitem__(0, c["path"][0] + ".gone"))
    mismatch = _named(_mismatches(recipe, index), "analysed_sst", "0.0.0", "")
    assert ".gone" in mismatch.file


def test_wrong_dtype(written, tmp_path):
    recipe, index = _copy(written, tmp_path)
    _edit_zarray(index, "analysed_sst", dtype="<u2")
    mismatch = _named(_mismatches(recipe, index), "analysed_sst", "0.0.0", "data type vs the source's")
    assert (mismatch.expected, mismatch.got) == ("int16", "uint16")


def test_wrong_fill_value(written, tmp_path):
    recipe, index = _copy(written, tmp_path)
    _edit_zarray(index, "analysed_sst", fill_value=7)
    mismatch = _named(_mismatches(recipe, index), "analysed_sst", "-", "fill value vs the source's")
    assert mismatch.got == "7.0"


def test_missing_chunk_row(written, tmp_path):
    recipe, index = _copy(written, tmp_path)

    def drop(c):
        for name in c:
            c[name][2] = None

    _edit_refs(index, "analysed_sst", drop)
    mismatch = _named(_mismatches(recipe, index), "analysed_sst", "0.0.2", "a chunk with no reference")
    assert "the source has" in mismatch.got


def test_decompression_error_is_a_named_mismatch(written, tmp_path):
    recipe, index = _copy(written, tmp_path)
    _edit_zarray(index, "analysed_sst", compressor={"id": "zstd", "level": 1})  # zlib bytes read as zstd
    mismatch = _named(_mismatches(recipe, index), "analysed_sst", "0.0.0", "reading the chunk")
    assert "Error" in mismatch.got
