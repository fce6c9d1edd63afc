"""The sharded write step (chunkindex.indexes.sharded, rules/write.smk): the
workflow cut into 1, 2 or 3 header batches per write_shard job writes every
index kind byte-identical to the single-job writer (`write_index` on every
header batch at once), and a shard job reads its own header batches alone.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import REPO, run_snakemake

from chunkindex.indexes.sharded import WritePlan, batch_references, combine_shards, plan_shards
from chunkindex.pipeline import write_index
from chunkindex.recipe import load_recipe
from chunkindex.tables import read_chunk_table, read_parquet
from chunkindex.workflow import index_outputs, write_shard_step

pytestmark = pytest.mark.slow
# Not index content: Snakemake's marker of a directory output, the summary's
# timings (compared apart), the state (source modification times), and files
# whose bytes differ from write to write (GeoPackage and DuckDB stamps).
SKIPPED = (".snakemake_timestamp", ".summary.json", ".state.parquet", ".gpkg", ".duckdb")


def _digests(index: Path) -> dict[str, str]:
    return {str(p.relative_to(index)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(index.rglob("*")) if p.is_file() and not p.name.endswith(SKIPPED)}


def _summary(index: Path, dataset: str) -> dict:
    summary = json.loads((index / f"{dataset}.summary.json").read_text())
    summary.pop("timings")
    return summary


def _run(results: Path, dataset: str, shard_refs: int) -> WritePlan:
    run_snakemake("--until", "write", "--config", f"dataset={dataset}", f"results_dir={results}",
                  f"write={{shard_refs: {shard_refs}}}")
    return WritePlan.read(results / dataset / "write" / "plan.json")


def _batches(results: Path, dataset: str) -> list[Path]:
    return sorted((results / dataset / "headers").glob("batch-*.arrow"))


def _single_job(results: Path, dataset: str, out: Path, recipes: Path = REPO / "recipes") -> Path:
    """The index the single-job writer makes from the run's listing and header batches."""
    recipe = load_recipe(recipes / f"{dataset}.yaml")
    headers = pa.concat_tables([read_chunk_table(p) for p in _batches(results, dataset)])
    outputs = index_outputs(str(out), dataset, recipe)
    del outputs["state"]
    write_index(recipe, read_parquet(results / dataset / "manifest.parquet"), headers, outputs)
    return out / "index"


def _check_identical(results: Path, dataset: str, single: Path) -> None:
    index = results / dataset / "index"
    sharded = _digests(index)
    assert sharded == _digests(single), "the sharded index differs from the single-job one"
    assert any(name.endswith(".parq") for name in sharded) and len(sharded) > 10
    assert _summary(index, dataset) == _summary(single, dataset)
    # The shard folders are temporary outputs: gone once the index is written.
    assert not list((results / dataset / "write").glob("shard-*"))


def test_cog_index_in_shards_of_1_2_3_batches_equals_the_single_job_write(tmp_path, fixtures_root):
    dataset = "ghrsst-demo-deflate"
    results = tmp_path / "results"
    _run(results, dataset, 10**9)  # one shard
    refs = [batch_references(p) for p in _batches(results, dataset)]
    assert len(refs) == 4 and len(set(refs)) == 1  # four header batches of one day each
    single = _single_job(results, dataset, tmp_path / "single")
    _check_identical(results, dataset, single)
    for per_shard, expected in ((1, [1, 1, 1, 1]), (2, [2, 2]), (3, [3, 1])):
        # The same results folder: a new shard size replans and rewrites the index.
        plan = _run(results, dataset, per_shard * refs[0])
        assert plan.mode == "write"
        assert [len(s.batches) for s in plan.shards] == expected
        benchmarks = sorted((results / "benchmarks" / dataset).glob("write_shard-*.tsv"))
        assert len(benchmarks) >= len(expected)  # one job per shard ran
        _check_identical(results, dataset, single)


def test_netcdf_index_in_shards_equals_the_single_job_write(tmp_path, fixtures_root):
    dataset = "bran-demo"
    results = tmp_path / "results"
    plan = _run(results, dataset, 1)  # one header batch per shard
    assert [s.batches for s in plan.shards] == [(0,), (1,)]
    _check_identical(results, dataset, _single_job(results, dataset, tmp_path / "single"))


def _write_in_one_reference_shards(doc: dict, tmp_path: Path) -> tuple[Path, Path]:
    """Run the workflow up to `write` on recipe `doc` with the smallest shard
    size (every cut at the next change of time); (recipes, results) folders."""
    import yaml

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / f"{doc['id']}.yaml").write_text(yaml.safe_dump(doc))
    results = tmp_path / "results"
    run_snakemake("--until", "write", "--config", f"dataset={doc['id']}", f"recipes_dir={recipes}",
                  f"results_dir={results}", "write={shard_refs: 1}")
    return recipes, results


def test_netcdf_notes_that_need_every_file_equal_the_single_job_write(tmp_path, fixtures_root):
    """bran's January and March, one shard each: the gap in Time falls
    between the shards, so only the whole coordinate shows it."""
    import yaml

    source = tmp_path / "bran"
    source.mkdir()
    for month in ("01", "03"):
        shutil.copy(fixtures_root / "bran" / f"ocean_temp_2023_{month}.nc", source)
    doc = yaml.safe_load((REPO / "recipes" / "bran-demo.yaml").read_text())
    doc["id"] = "bran-gap"
    doc["source"] = {"url": str(source), "pattern": doc["source"]["pattern"]}
    doc["headers"]["batch_size"] = 1
    recipes, results = _write_in_one_reference_shards(doc, tmp_path)
    assert len(WritePlan.read(results / "bran-gap" / "write" / "plan.json").shards) == 2
    _check_identical(results, "bran-gap", _single_job(results, "bran-gap", tmp_path / "single", recipes))
    notes = _summary(results / "bran-gap" / "index", "bran-gap")["notes"]
    assert [n for n in notes if "gap in Time" in n] == ["temp: gap in Time between 16101.5 and 16130.5"], notes


def test_shards_cut_inside_a_header_batch_equal_the_single_job_write(tmp_path, fixtures_root):
    """Header batches of three files split the days (two files a day): each
    cut moves to the next day, and a shard takes the first file of the next
    batch, reading that batch for it."""
    import yaml

    doc = yaml.safe_load((REPO / "recipes" / "ghrsst-demo-deflate.yaml").read_text())
    doc["id"] = "ghrsst-odd-batches"
    doc["headers"]["batch_size"] = 3
    recipes, results = _write_in_one_reference_shards(doc, tmp_path)
    plan = WritePlan.read(results / "ghrsst-odd-batches" / "write" / "plan.json")
    assert [(s.first_row, s.end_row, s.batches) for s in plan.shards] == [(0, 4, (0, 1)), (4, 6, (1,)),
                                                                         (6, 8, (2,))]
    _check_identical(results, "ghrsst-odd-batches",
                     _single_job(results, "ghrsst-odd-batches", tmp_path / "single", recipes))


def test_a_shard_job_reads_its_own_header_batches_alone(tmp_path, fixtures_root):
    """Memory stays bounded because a shard assembles its own files only:
    given nothing but its header batch (the others absent), shard 2 of 4 is
    written, and holds the references of its files alone."""
    dataset = "ghrsst-demo-deflate"
    results = tmp_path / "results"
    plan = _run(results, dataset, 1)
    assert len(plan.shards) == 4
    shard = plan.shards[2]
    alone = tmp_path / "alone"
    alone.mkdir()
    batch = _batches(results, dataset)[shard.batches[0]]
    shutil.copy(batch, alone / batch.name)
    out = tmp_path / "shard-00002"
    write_shard_step(str(REPO / "recipes" / f"{dataset}.yaml"), str(results / dataset / "manifest.parquet"),
                     str(results / dataset / "write" / "plan.json"), 2, [str(alone / batch.name)], str(out))
    rows = sum(read_chunk_table(p).num_rows for p in out.glob("columns-*.arrow"))
    assert rows == batch_references(alone / batch.name)  # this day's tiles, every level, nothing else
    files = read_parquet(results / dataset / "manifest.parquet").slice(
        shard.first_row, shard.end_row - shard.first_row)["url"].to_pylist()
    arrays = combine_shards([out], "time").assembled.arrays
    assert {u for a in arrays for u in a.urls} == set(files)
    assert {a.shape[0] for a in arrays if a.dims[0] == "time"} == {1}  # one day


def test_cuts_fall_where_the_time_changes():
    # Two variables a day, three files a batch: a cut at a batch boundary
    # would split a day, so it moves to the next day and the shard reads
    # the next batch's first file too.
    times = np.repeat(np.arange("2024-01-01", "2024-01-07", dtype="datetime64[D]"), 2)
    shards = plan_shards(times, 3, [3, 3, 3, 3], 3)
    assert [(s.first_row, s.end_row, s.batches) for s in shards] == [
        (0, 4, (0, 1)), (4, 6, (1,)), (6, 10, (2, 3)), (10, 12, (3,))]
    assert plan_shards(np.full(4, np.datetime64("NaT"), "datetime64[s]"), 1, [9] * 4, 1)[0].end_row == 4


def _punch_holes(assembled, first_step: int) -> None:
    """Chunks with no data at every 7th chunk number of the whole archive
    (`first_step`: the block's first time step), as sparse tiles would be."""
    seen = set()
    for array in assembled.arrays:
        if array.inline is not None or id(array.url_index) in seen:
            continue
        seen.add(id(array.url_index))
        per_step = array.n_chunks // array.shape[0]
        numbers = np.arange(array.n_chunks) + first_step * per_step
        array.url_index[numbers % 7 == 0] = -1
    for array in assembled.arrays:
        if "variant_of" not in array.attrs.get("chunkindex", {}):
            array.fill_missing()


@pytest.fixture(scope="module")
def hand_made_shards(tmp_path_factory, fixtures_root):
    """ghrsst-demo-deflate assembled whole and in three shards (1, 1 and 2
    days) with chunks missing across shard boundaries, written in-process."""
    from chunkindex.formats import extractor_for
    from chunkindex.indexes.sharded import write_shard
    from chunkindex.pipeline import store_spec
    from chunkindex.sources.listing import list_sources

    tmp_path = tmp_path_factory.mktemp("hand-made-shards")
    recipe = load_recipe(REPO / "recipes" / "ghrsst-demo-deflate.yaml")
    extractor = extractor_for(recipe.format)
    spec = store_spec(recipe, REPO)
    manifest = list_sources(recipe, spec)
    headers = extractor.read_batch(recipe, spec, manifest)
    whole = extractor.assemble(recipe, manifest, headers)
    _punch_holes(whole, 0)
    folders = []
    for number, (first, end) in enumerate(((0, 2), (2, 4), (4, 8))):  # two files a day
        block = manifest.slice(first, end - first)
        ids = headers["file_id"].to_numpy()
        part = extractor.assemble(recipe, block, headers.filter((ids >= first) & (ids < end)))
        _punch_holes(part, first // 2)
        folders.append(tmp_path / f"shard-{number}")
        write_shard(part, folders[-1], block["url"][0].as_py())
    return recipe, manifest, whole, folders


def test_streamed_writers_equal_the_single_writer_with_missing_chunks_and_small_cuts(tmp_path, hand_made_shards):
    """KerchunkStream and CriStream against the single writers, for record
    files and row groups smaller than, equal to and across time steps."""
    from chunkindex.indexes import flat, kerchunk
    from chunkindex.indexes.sharded import CriStream, KerchunkStream

    recipe, manifest, whole, folders = hand_made_shards
    combined = combine_shards(folders, recipe.concat.dim)
    arrays = [a for a in whole.arrays if not a.short_edge_dims]
    assert combined.assembled.missing["analysed_sst"] == whole.arrays[0].n_missing > 0
    for size in (3, 8, 13, 1000):
        single, streamed = tmp_path / f"single-{size}", tmp_path / f"streamed-{size}"
        kerchunk.write_kerchunk_parquet(arrays, single / "x.parq", size, {"a": 1})
        KerchunkStream(combined)([a for a in combined.assembled.arrays if not a.short_edge_dims],
                                 streamed / "x.parq", size, {"a": 1})
        assert _digests(single) == _digests(streamed)
        flat.write_cri_parquet(whole, single / "x.cri.parquet", files=manifest, row_group_rows=size,
                               footprints=True)
        CriStream(combined)(combined.assembled, streamed / "x.cri.parquet", files=manifest, row_group_rows=size,
                            footprints=True)
        assert (single / "x.cri.parquet").read_bytes() == (streamed / "x.cri.parquet").read_bytes()


def test_kinds_written_from_every_reference_refuse_a_large_archive_before_writing(tmp_path, hand_made_shards,
                                                                                  monkeypatch):
    from chunkindex.indexes import sharded
    from chunkindex.workflow import combine_step

    recipe, manifest, _, folders = hand_made_shards
    outputs = index_outputs(str(tmp_path), recipe.id, recipe)
    # The demo has 112 references: over the limits of footprints and VRT, within Kerchunk JSON's.
    monkeypatch.setattr(sharded, "IN_MEMORY_LIMITS", {**sharded.IN_MEMORY_LIMITS, "footprints": 100, "vrt": 111,
                                                      "kerchunk-json": 112})
    with pytest.raises(ValueError, match=r"112 references are more than .*: footprints \(limit 100\), "
                                         r"vrt \(limit 111\); kerchunk-parquet"):
        combine_step(recipe, manifest, [str(f) for f in folders], outputs, threads=1)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing written
    del outputs["kerchunk_json"], outputs["footprints_parquet"], outputs["footprints_gpkg"], outputs["footprints_fgb"]
    del outputs["vrt"]
    combine_step(recipe, manifest, [str(f) for f in folders], outputs, threads=1)  # the streamed kinds only
    index = tmp_path / "index"
    assert (index / f"{recipe.id}.cri.parquet").is_file() and (index / f"{recipe.id}.parq" / ".zmetadata").is_file()


def test_notes_counted_per_shard_are_summed():
    from chunkindex.indexes.sharded import _summed_big_chunk_notes
    from chunkindex.model import BIG_CHUNK_NOTE

    def big(count: int, size: int) -> str:
        return f"v: {count} chunks larger than 2 GiB (up to {size} bytes), indexed exactly; {BIG_CHUNK_NOTE}"

    notes = [big(2, 3_000_000_000), "v: a chain is not decodable by GDAL", big(1, 4_000_000_000)]
    assert _summed_big_chunk_notes(notes) == [big(3, 4_000_000_000), "v: a chain is not decodable by GDAL"]
