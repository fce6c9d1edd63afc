"""kill -9 in the middle of each step, then run again: the run completes and
the index is byte-identical to an uninterrupted run.

The whole Snakemake process group is killed (as a node failure or the OOM
killer would), so Snakemake's lock, its incomplete markers and its backup of
the write rule's update() outputs stay behind. After `snakemake --unlock`
(Snakemake asks for it after any kill) a plain rerun must finish: before
chunkindex cleared that backup at start, every rerun after a kill during
`write` failed with `FileExistsError: .snakemake/backups/.../<id>.parq`.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, SNAKEMAKE, run_snakemake

from chunkindex.workflow import snakemake_backup_path

pytestmark = pytest.mark.slow
DATASET = "ghrsst-demo-deflate"
# Deterministic outputs of the write step (the summary holds timings, the
# GeoPackage a creation time).
COMPARED = (f"{DATASET}.parq", f"{DATASET}.json", f"{DATASET}.cri.parquet", f"{DATASET}.footprints.parquet",
            f"{DATASET}.state.parquet")


def _config(results: Path) -> list[str]:
    # Up to GDAL's validation of the index (the report adds nothing here);
    # the write step in four shards (one header batch each, 28 references).
    return [str(results / DATASET / "validation.json"), "--config", f"dataset={DATASET}", f"results_dir={results}",
            "write={shard_refs: 28}"]


def _digests(results: Path) -> dict[str, str]:
    index = results / DATASET / "index"
    files = []
    for name in COMPARED:
        path = index / name
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {str(p.relative_to(index)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _run_and_kill(results: Path, kill_point: Callable[[], bool], *extra: str, timeout: float = 120) -> None:
    """Start the workflow; SIGKILL its whole process group as soon as
    `kill_point()` holds (polled every millisecond)."""
    process = subprocess.Popen([SNAKEMAKE, *extra, *_config(results)], cwd=REPO, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not kill_point():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before the kill point:\n{process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError("the kill point was never reached")
        time.sleep(0.001)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()


def _log_started(results: Path, name: str) -> Callable[[], bool]:
    return (results / "logs" / DATASET / name).is_file


def _unlock(results: Path) -> None:
    run_snakemake("--unlock", *_config(results)[1:])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, fixtures_root) -> tuple[Path, dict[str, str]]:
    """An uninterrupted run: its results folder and the digests of its index."""
    results = tmp_path_factory.mktemp("uninterrupted")
    run_snakemake(*_config(results))
    return results, _digests(results)


def test_killed_in_every_step_then_rerun_gives_the_same_index(tmp_path, uninterrupted):
    results = tmp_path / "results"
    index = results / DATASET / "index"
    # list: killed while listing; the rerun lists again and goes on to the headers.
    _run_and_kill(results, _log_started(results, "list.log"))
    assert not (results / DATASET / "manifest.parquet").exists()
    _unlock(results)
    # headers: killed while the first batch is read.
    _run_and_kill(results, _log_started(results, "headers-00000.log"))
    _unlock(results)
    # write_shard: killed while a shard is assembled (after the plan).
    _run_and_kill(results, _log_started(results, "write_shard-00001.log"))
    _unlock(results)
    # write: killed while the shards are combined into the index (its staging folder exists).
    _run_and_kill(results, lambda: any(index.glob(f".{DATASET}.parq.partial-*")))
    _unlock(results)
    # validate: killed while GDAL reads the index.
    _run_and_kill(results, _log_started(results, "validate.log"))
    _unlock(results)
    run_snakemake(*_config(results))
    assert _digests(results) == uninterrupted[1]
    assert not list(index.glob(".*partial-*")) and not list(index.glob(".*old-*"))
    assert not list((results / DATASET / "write").glob("*shard-*"))  # shards and their staging folders


def test_killed_while_updating_the_index_the_rerun_does_not_trip_on_snakemakes_backup(uninterrupted):
    results, reference = uninterrupted
    parquet_index = results / DATASET / "index" / f"{DATASET}.parq"
    backup = snakemake_backup_path(parquet_index, REPO / ".snakemake")
    (results / "logs" / DATASET / "write.log").unlink(missing_ok=True)
    # The write job rewrites the index in place (update() outputs): Snakemake
    # has backed them up by the time the step logs.
    _run_and_kill(results, _log_started(results, "write.log"), "--forcerun", "write")
    assert backup.is_dir(), "Snakemake's backup of the index should be left behind by the kill"
    _unlock(results)
    rerun = run_snakemake(*_config(results))
    assert "FileExistsError" not in rerun.stderr
    assert "left by an interrupted job" in rerun.stderr
    assert not backup.exists()
    assert _digests(results) == reference
    # The listing's batches/ folder is an update() output too.
    (results / "logs" / DATASET / "list.log").unlink(missing_ok=True)
    _run_and_kill(results, _log_started(results, "list.log"), "--forcerun", "list_sources")
    assert snakemake_backup_path(results / DATASET / "batches", REPO / ".snakemake").is_dir()
    _unlock(results)
    run_snakemake(*_config(results))
    assert _digests(results) == reference


def test_leftovers_names_only_the_temporary_paths_of_a_target(tmp_path):
    from chunkindex.atomic import leftovers, staging_path

    index = tmp_path / "x.parq"
    (index / "sst").mkdir(parents=True)
    (index / "sst" / "refs.0.parq").write_bytes(b"kept")
    (index / ".zmetadata").write_text("{}")
    staged = [staging_path(index), staging_path(index, "old"), staging_path(index / "sst" / "refs.1.parq", "append"),
              staging_path(index / ".zmetadata", "append")]
    for path in staged:
        path.write_bytes(b"")
    other = staging_path(tmp_path / "x.parquet")  # another output's: not this one's
    other.write_bytes(b"")
    assert leftovers(index) == sorted(staged)
    assert leftovers(tmp_path / "missing.parq") == []
