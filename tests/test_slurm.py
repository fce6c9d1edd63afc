"""The GHRSST-scale recipe on a real single-node Slurm cluster (Debian's
slurmctld, slurmd and munge, started by tools/slurm_local.sh) through
profiles/slurm: the index is byte-identical to a local run, every job carries
its rule's threads, mem_mb and runtime as Slurm limits, and a job over its
memory limit is killed by Slurm with the previous index left intact.

The ghrsst-scale recipe runs on the first 2,000 days of its catalogue
(full-size GHRSST headers, 13.6 M references; the whole 8,660 days took
3.5 min here, Snakemake's start in every job and the executor's polling
being most of it) up to the index (`--until write`: list, two header batches,
the write plan, its shard and the combining write step as Slurm jobs); GDAL's validation is left to the local
workflow tests. Slurm is installed with apt when missing (root); when it
cannot be installed or started the tests skip and say why.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_snakemake

from chunkindex.pipeline import run_recipe
from chunkindex.recipe import load_recipe

pytestmark = pytest.mark.slow

SLURM_LOCAL = REPO / "tools" / "slurm_local.sh"
DATASET = "ghrsst-scale"
FILES, BATCH = 2000, 1000
# The rules' declared resources (rules/*.smk): what Slurm must be asked for.
RULE_LIMITS = {  # rule: (threads, mem_mb, runtime in minutes)
    "list_sources": (1, 2000, 30),
    "headers": (1, 2000, 60),
    "plan_write": (1, 1000, 10),
    "write_shard": (1, 2000, 60),
    "write": (2, 2000, 60),
}


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict[str, str]:
    """A running local Slurm cluster; the environment that reaches it."""
    install = subprocess.run([SLURM_LOCAL, "install"], check=False, capture_output=True, text=True, timeout=900)
    if install.returncode != 0:
        pytest.skip(f"Slurm is not available: {install.stderr.strip().splitlines()[-1]}")
    state = tmp_path_factory.mktemp("slurm")
    start = subprocess.run([SLURM_LOCAL, "start", str(state)], check=False, capture_output=True, text=True, timeout=120)
    if start.returncode != 0:
        pytest.skip(f"Slurm did not start on this machine: {start.stderr.strip()}")
    yield {"SLURM_CONF": str(state / "slurm.conf"), "SLURM_LOCAL_DIR": str(state),
           "SLURM_MODE": (state / "mode").read_text().strip()}
    subprocess.run([SLURM_LOCAL, "stop", str(state)], check=False, capture_output=True, timeout=60)


def _slurm_args(slurm: dict[str, str]) -> list[str]:
    # No slurmdbd here: job states come from slurmctld (squeue, MinJobAge 1 h),
    # there are no accounts, and status checks start after one second.
    logs = Path(slurm["SLURM_LOCAL_DIR"]) / "job-logs"
    return ["--profile", "profiles/slurm", "--slurm-status-command", "squeue", "--slurm-no-account",
            "--slurm-init-seconds-before-status-checks", "1", "--slurm-logdir", str(logs),
            "--slurm-keep-successful-logs", "--latency-wait", "5"]


def _index_digests(index: Path) -> dict[str, str]:
    """sha256 of every file of a Kerchunk Parquet index (not Snakemake's
    `.snakemake_timestamp` marker of a directory() output)."""
    files = sorted(p for p in index.rglob("*") if p.is_file() and p.name != ".snakemake_timestamp")
    return {str(p.relative_to(index)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _slurm_index(results: Path) -> Path:
    return results / DATASET / "index" / f"{DATASET}.parq"


def _jobs(slurm: dict[str, str]) -> list[dict[str, str]]:
    """Every job slurmctld knows: id, state, rule (from the job comment), and
    the limits it enforces (memory, time limit, CPUs)."""
    out = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T|%k|%m|%l|%C"],
                         capture_output=True, text=True, check=True, env={**os.environ, **slurm}).stdout
    keys = ("id", "state", "comment", "memory", "time_limit", "cpus")
    return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]


def _rule(comment: str) -> str:
    # The executor names the rule in the job comment: rule_<name>[_wildcards_...].
    return comment.removeprefix("rule_").split("_wildcards_")[0]


@pytest.fixture(scope="module")
def recipes(tmp_path_factory) -> Path:
    """The ghrsst-scale recipe on the first FILES files of its fixture set
    (hard links), in header batches of BATCH."""
    if not (REPO / "resources" / "fixtures" / DATASET / "MANIFEST.sha256").is_file():
        run_snakemake(f"resources/fixtures/{DATASET}/MANIFEST.sha256", "--config", f"dataset={DATASET}")
    folder = tmp_path_factory.mktemp("subset")
    source = REPO / "resources" / "fixtures" / DATASET
    for path in sorted(source.rglob("*.tif"))[:FILES]:  # year/month/day folders: in time order
        (folder / "archive" / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
        os.link(path, folder / "archive" / path.relative_to(source))
    doc = yaml.safe_load((REPO / "recipes" / f"{DATASET}.yaml").read_text())
    doc["source"]["url"] = str(folder / "archive")
    del doc["source"]["synthetic"]
    doc["headers"]["batch_size"] = BATCH
    (folder / "recipes").mkdir()
    (folder / "recipes" / f"{DATASET}.yaml").write_text(yaml.safe_dump(doc))
    return folder / "recipes"


def _config(recipes: Path, results: Path) -> list[str]:
    return ["--until", "write", "--config", f"dataset={DATASET}", f"recipes_dir={recipes}", f"results_dir={results}"]


@pytest.fixture(scope="module")
def runs(slurm, recipes, tmp_path_factory) -> dict[str, Path]:
    """The recipe run locally (in this process, `run_recipe`: the workflow's
    steps without Snakemake), then through Slurm."""
    local = tmp_path_factory.mktemp("local")
    result = run_recipe(load_recipe(recipes / f"{DATASET}.yaml"), REPO, local, validate=False)
    on_slurm = tmp_path_factory.mktemp("on-slurm")
    run_snakemake(*_slurm_args(slurm), *_config(recipes, on_slurm), env=slurm)
    return {"local": Path(result.outputs["kerchunk_parquet"]), "slurm": on_slurm, "recipes": recipes}


def test_the_index_built_on_slurm_is_byte_identical_to_a_local_run(runs):
    local, on_slurm = _index_digests(runs["local"]), _index_digests(_slurm_index(runs["slurm"]))
    assert len(local) > 10
    assert on_slurm == local


def test_every_job_ran_on_slurm_with_its_rules_limits(runs, slurm):
    jobs = [j for j in _jobs(slurm) if j["state"] == "COMPLETED"]
    by_rule: dict[str, list[dict[str, str]]] = {}
    for job in jobs:
        by_rule.setdefault(_rule(job["comment"]), []).append(job)
    assert set(RULE_LIMITS) <= set(by_rule), by_rule
    assert len(by_rule["headers"]) == 2  # batch_size 4,330: two batches, two jobs
    for rule, (threads, mem_mb, runtime) in RULE_LIMITS.items():
        for job in by_rule[rule]:
            assert job["cpus"] == str(threads), job
            assert job["memory"] == f"{mem_mb}M", job
            hours, minutes = divmod(runtime, 60)
            assert job["time_limit"] == (f"{hours}:{minutes:02d}:00" if hours else f"{minutes}:00"), job
    # slurmctld's job-completion records agree (the file an admin would read).
    records = (Path(slurm["SLURM_LOCAL_DIR"]) / "log" / "jobcomp.txt").read_text()
    write_job = by_rule["write"][0]["id"]
    record = next(line for line in records.splitlines() if line.startswith(f"JobId={write_job} "))
    assert "JobState=COMPLETED" in record and "TimeLimit=60" in record
    assert "Tres=cpu=2,mem=2000M" in record


def test_a_job_over_its_memory_limit_is_killed_by_slurm_and_the_index_is_kept(runs, slurm):
    before = _index_digests(_slurm_index(runs["slurm"]))
    # 200 MB: less than the write job needs (two Snakemake processes and the step
    # streaming the shards into the index).
    result = run_snakemake(*_slurm_args(slurm), *_config(runs["recipes"], runs["slurm"]), "--forcerun", "write",
                           "--set-resources", "write:mem_mb=200", env=slurm, check=False)
    assert result.returncode != 0
    assert re.search(r"Error in rule write:\n\s+message: SLURM-job '\d+' failed", result.stderr), result.stderr[-3000:]
    killed = [j for j in _jobs(slurm) if _rule(j["comment"]) == "write" and j["state"] != "COMPLETED"]
    assert len(killed) == 1 and killed[0]["memory"] == "200M", killed
    # Slurm's own word: the kernel (cgroup mode) or slurmstepd (cgroup-free) killed it for memory.
    job_log = (Path(slurm["SLURM_LOCAL_DIR"]) / "job-logs" / "rule_write" / f"{killed[0]['id']}.log").read_text()
    assert re.search(r"oom-kill event|Out Of Memory|exceeded (job |step )?memory limit", job_log, re.IGNORECASE), job_log
    # The index is as before: the profile's keep-incomplete stops the
    # submitting Snakemake from deleting the index the job left in place.
    assert _index_digests(_slurm_index(runs["slurm"])) == before
