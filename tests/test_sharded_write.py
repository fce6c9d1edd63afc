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


def _single_job(results: Path, dataset: str, out: Path) -> Path:
    """The index the single-job writer makes from the run's listing and header batches."""
    recipe = load_recipe(REPO / "recipes" / f"{dataset}.yaml")
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
