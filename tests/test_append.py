"""A new day appended to a Kerchunk Parquet index gives the very index a
full rewrite gives; anything else (a file in the middle, a changed recipe,
a different layout) rewrites the whole index."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, run_snakemake

from chunkindex.tables import read_parquet
from chunkindex.workflow import headers_step, list_step, write_step

LAST_DAY = "20240202"


def _recipe(tmp_path: Path, source: Path, **output) -> Path:
    doc = yaml.safe_load((REPO / "recipes/ghrsst-demo-deflate.yaml").read_text())
    doc["id"] = "growing"
    doc["source"]["url"] = str(source)
    del doc["source"]["synthetic"]
    doc["output"] = {"kinds": ["kerchunk-parquet"], "record_size": 7, **output}
    doc["headers"]["batch_size"] = 3
    path = tmp_path / "recipes" / "growing.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(recipe: Path, work: Path) -> dict:
    """list -> headers -> write, as the workflow's steps do."""
    work.mkdir(exist_ok=True)
    manifest = list_step(str(recipe), "/", str(work / "manifest.parquet"), str(work / "batches"))
    (work / "headers").mkdir(exist_ok=True)
    headers = []
    for batch in sorted((work / "batches").glob("batch-*.parquet")):
        out = work / "headers" / batch.with_suffix(".arrow").name
        headers_step(str(recipe), "/", str(batch), str(out))
        headers.append(str(out))
    outputs = {"kerchunk_parquet": str(work / "index.parq"), "summary": str(work / "summary.json"),
               "state": str(work / "state.parquet")}
    if "cri-parquet" in yaml.safe_load(recipe.read_text())["output"]["kinds"]:
        outputs["cri_parquet"] = str(work / "index.cri.parquet")
    summary = write_step(str(recipe), str(work / "manifest.parquet"), headers, outputs, threads=2)
    assert manifest.num_rows
    return summary


def _archive(tmp_path: Path, fixtures_root: Path, with_last_day: bool) -> Path:
    source = tmp_path / "archive"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(fixtures_root / "ghrsst-deflate-pred1", source, ignore=shutil.ignore_patterns("MANIFEST*"))
    if not with_last_day:
        for path in source.rglob(f"{LAST_DAY}*.tif"):
            path.unlink()
    return source


def _add_last_day(source: Path, fixtures_root: Path) -> None:
    for path in (fixtures_root / "ghrsst-deflate-pred1").rglob(f"{LAST_DAY}*.tif"):
        target = source / path.relative_to(fixtures_root / "ghrsst-deflate-pred1")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)


def _refs(index: Path) -> dict[str, list]:
    return {part.parent.name + "/" + part.name: read_parquet(part).to_pylist()
            for part in sorted(index.glob("*/refs.*.parq"))}


def test_a_new_day_is_appended_and_equals_a_full_rewrite(tmp_path, fixtures_root, gdal):
    source = _archive(tmp_path, fixtures_root, with_last_day=False)
    recipe = _recipe(tmp_path, source)
    first = _run(recipe, tmp_path / "work")
    assert first.appended_files is None
    index = tmp_path / "work/index.parq"
    files_before = {p: p.stat().st_ino for p in index.glob("analysed_sst/refs.*.parq")}
    _add_last_day(source, fixtures_root)
    appended = _run(recipe, tmp_path / "work")
    assert appended.appended_files == 2
    # Record files holding only old rows were left alone.
    untouched = [p for p, inode in files_before.items() if p.stat().st_ino == inode]
    assert untouched, "no record file was kept"

    full = _run(_recipe(tmp_path / "fresh", source), tmp_path / "fresh-work")
    fresh = tmp_path / "fresh-work/index.parq"
    assert _refs(index) == _refs(fresh)
    meta = json.loads((index / ".zmetadata").read_text())["metadata"]
    fresh_meta = json.loads((fresh / ".zmetadata").read_text())["metadata"]
    assert meta == fresh_meta
    assert appended.refs == full.refs and appended.refs_per_array == full.refs_per_array
    root = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup()
    sst = root.OpenMDArray("analysed_sst")
    assert sst.GetDimensions()[0].GetSize() == 4
    np.testing.assert_array_equal(root.OpenMDArray("time").ReadAsArray()[-1] - 19754, 1)  # 2024-02-02
    reference = gdal.OpenEx(f'ZARR:"{fresh}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup()
    np.testing.assert_array_equal(sst.ReadAsArray(), reference.OpenMDArray("analysed_sst").ReadAsArray())


def test_a_new_day_is_appended_to_the_cri_index_too(tmp_path, fixtures_root):
    """Kerchunk + CRI: the CRI index grows by the new day's row groups (its
    old pages copied as bytes) and equals the index written from scratch."""
    from chunkindex.flat import open_index
    from chunkindex.indexes.parquet_splice import split

    source = _archive(tmp_path, fixtures_root, with_last_day=False)
    recipe = _recipe(tmp_path, source, kinds=["kerchunk-parquet", "cri-parquet"])
    _run(recipe, tmp_path / "work")
    cri = tmp_path / "work/index.cri.parquet"
    old_pages = split(cri.read_bytes()).data
    _add_last_day(source, fixtures_root)
    appended = _run(recipe, tmp_path / "work")
    assert appended.appended_files == 2 and "append_cri" in appended.timings
    assert split(cri.read_bytes()).data.startswith(old_pages)
    _run(_recipe(tmp_path / "fresh", source, kinds=["kerchunk-parquet", "cri-parquet"]), tmp_path / "fresh-work")
    ours, fresh = open_index(cri), open_index(tmp_path / "fresh-work/index.cri.parquet")
    assert ours.document["arrays"] == fresh.document["arrays"]
    assert ours.document["dimensions"] == fresh.document["dimensions"]
    for name in ours.arrays:
        for level in ours.arrays[name].levels:
            assert ours.rows(name, level).to_pylist() == fresh.rows(name, level).to_pylist()
    np.testing.assert_array_equal(ours.read("analysed_sst", (3,)), fresh.read("analysed_sst", (3,)))


def test_a_file_inside_the_time_axis_rewrites_the_index(tmp_path, fixtures_root, caplog):
    source = _archive(tmp_path, fixtures_root, with_last_day=True)
    middle = sorted(source.rglob("20240131*.tif"))
    kept = {p: p.read_bytes() for p in middle}
    for path in middle:
        path.unlink()
    recipe = _recipe(tmp_path, source)
    _run(recipe, tmp_path / "work")
    for path, data in kept.items():
        path.write_bytes(data)
    caplog.set_level("INFO")
    summary = _run(recipe, tmp_path / "work")
    assert summary.appended_files is None
    assert "new files fall inside the time axis" in caplog.text


def test_a_changed_recipe_rewrites_the_index(tmp_path, fixtures_root, caplog):
    source = _archive(tmp_path, fixtures_root, with_last_day=False)
    recipe = _recipe(tmp_path, source)
    _run(recipe, tmp_path / "work")
    _add_last_day(source, fixtures_root)
    recipe = _recipe(tmp_path, source, overviews=False)
    caplog.set_level("INFO")
    summary = _run(recipe, tmp_path / "work")
    assert summary.appended_files is None
    assert "written with another recipe" in caplog.text


def test_an_index_whose_state_disagrees_is_rewritten(tmp_path, fixtures_root, caplog):
    """An update interrupted between the index and its state record."""
    source = _archive(tmp_path, fixtures_root, with_last_day=False)
    recipe = _recipe(tmp_path, source)
    _run(recipe, tmp_path / "work")
    zmetadata = tmp_path / "work/index.parq/.zmetadata"
    doc = json.loads(zmetadata.read_text())
    doc["metadata"][".zattrs"]["chunkindex_files"] += 2
    zmetadata.write_text(json.dumps(doc))
    _add_last_day(source, fixtures_root)
    caplog.set_level("INFO")
    summary = _run(recipe, tmp_path / "work")
    assert summary.appended_files is None and "disagree" in caplog.text


@pytest.mark.slow
def test_the_workflow_appends_a_new_day(tmp_path, fixtures_root):
    source = _archive(tmp_path, fixtures_root, with_last_day=False)
    recipe = _recipe(tmp_path, source)
    config = ["--config", "dataset=growing", f"recipes_dir={recipe.parent}", f"results_dir={tmp_path / 'results'}",
              "--until", "write"]
    run_snakemake(*config)
    index = tmp_path / "results/growing/index/growing.parq"
    first_record = (index / "analysed_sst/refs.0.parq").stat().st_ino
    _add_last_day(source, fixtures_root)
    grown = run_snakemake(*config, "--forcerun", "list_sources")
    summary = json.loads((tmp_path / "results/growing/index/growing.summary.json").read_text())
    assert summary["appended_files"] == 2, grown.stderr[-3000:]
    assert (index / "analysed_sst/refs.0.parq").stat().st_ino == first_record  # kept, not rewritten
    meta = json.loads((index / ".zmetadata").read_text())
    assert meta["metadata"]["analysed_sst/.zarray"]["shape"][0] == 4


def test_a_new_netcdf_month_is_appended_and_equals_a_full_rewrite(tmp_path, fixtures_root):
    source = tmp_path / "archive"
    shutil.copytree(fixtures_root / "bran", source, ignore=shutil.ignore_patterns("MANIFEST*"))
    last = source / "ocean_temp_2023_03.nc"
    data = last.read_bytes()
    last.unlink()
    doc = yaml.safe_load((REPO / "recipes/bran-demo.yaml").read_text())
    doc.update(id="growing", source={"url": str(source), "pattern": doc["source"]["pattern"]})
    doc["output"]["kinds"] = ["kerchunk-parquet"]
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "growing.yaml").write_text(yaml.safe_dump(doc))
    _run(recipes / "growing.yaml", tmp_path / "work")
    last.write_bytes(data)
    appended = _run(recipes / "growing.yaml", tmp_path / "work")
    assert appended.appended_files == 1
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh/growing.yaml").write_text(yaml.safe_dump(doc))
    _run(tmp_path / "fresh/growing.yaml", tmp_path / "fresh-work")
    index, fresh = tmp_path / "work/index.parq", tmp_path / "fresh-work/index.parq"
    assert _refs(index) == _refs(fresh)
    assert json.loads((index / ".zmetadata").read_text()) == json.loads((fresh / ".zmetadata").read_text())
