"""Benchmark: time and peak memory of every workflow step from ~10 M to ~600 M
chunk references, on local disk and through a local S3 endpoint (issue 13 §2).

Each point is a real workflow run (`snakemake --config dataset=<id>`: list,
header batches, write, validate, report) on a subset of the ten-times GHRSST
archive (`recipes/ghrsst-scale-x10.yaml`, 86,600 days, ~6,860 references a
day with overviews and references-only variants): its first days, hard-linked
into a folder of their own and listed as a whole; plus the BRAN-like full
archive (`recipes/bran-scale.yaml`, ~67 M references). With `--append` a
point is first indexed without its last file, which a second run then
appends (measured on its own: the append path on the big index). The S3 runs
read the same folder through a path-style S3 endpoint
(chunkindex.testing.servers.FolderS3Server: moto keeps objects in memory,
and the archive is 3 TB of hard links).

Figures come from Snakemake's `benchmark:` files: per step, its wall time
(first job start to last job end, from the files' times) and the largest
`max_rss` of its jobs. Results accumulate in `<out>/scale.json` (one entry per
run, so the big points can run once, later); the table and the plot
(`<out>/scale.png`: time and peak memory against references) are made from
it. Each run's header batches and index are deleted once measured (they are
GBs at the big points); its benchmark files, logs and reports stay.

    .venv/bin/python bench/scale.py --points 10,50,100 --where local,s3   # M references
    .venv/bin/python bench/scale.py --points all --append --bran           # whole archives, + append
    .venv/bin/python bench/scale.py --report-only                          # table + plot again
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from calendar import monthrange
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
GHRSST = "ghrsst-scale-x10"
BRAN = "bran-scale"
# References per GHRSST day: 2,556 full-resolution tiles + 876 in the five
# overviews, twice (each level's references-only variant shares them).
GHRSST_REFS_PER_DAY = 2 * (2556 + 648 + 162 + 45 + 15 + 6)
LIMIT_MB = 2048  # every job must stay within 2 GB
# Snakemake's benchmark samples memory about once a second: a shorter job
# reports a few MB (a Python process is ~70 MB), i.e. nothing was sampled.
UNSAMPLED_MB = 20.0
STEP_ORDER = ("list", "headers", "plan_write", "write_shard", "write", "validate", "report", "footprint_map")


def recipe_doc(name: str) -> dict:
    return yaml.safe_load((REPO / "recipes" / f"{name}.yaml").read_text())


def fixture_folder(doc: dict) -> Path:
    return REPO / doc["source"]["url"]


def archive_files(archive: str) -> list[str]:
    """The archive's data files (relative paths, in date order: the fixture
    manifest is sorted by path, and the paths start with the date)."""
    from chunkindex.sources.listing import NamePattern
    from chunkindex.synthetic.manifest import MANIFEST_NAME, read_manifest

    doc = recipe_doc(archive)
    regex = NamePattern.compile(doc["source"]["pattern"]).regex
    return [rel for rel in sorted(read_manifest(fixture_folder(doc) / MANIFEST_NAME)) if regex.match(rel)]


def link_archive(archive: str, count: int, folder: Path) -> Path:
    """`folder` holding hard links to the archive's first `count` files (the
    point's subset, listed as a whole). Files already linked ~60,000 times
    (the GHRSST template; ext4 allows 65,000) are linked through a copy."""
    source = fixture_folder(recipe_doc(archive))
    files = archive_files(archive)[:count]
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()
    copies: dict[int, list] = {}
    for rel in files:
        if rel in present:
            continue
        path = source / rel
        stat = path.stat()
        target = path
        if stat.st_nlink > 30_000:
            entry = copies.get(stat.st_ino)
            if entry is None or entry[1] >= 60_000:
                copy = folder / ".copies" / f"{stat.st_ino}-{len(copies)}{path.suffix}"
                copy.parent.mkdir(parents=True, exist_ok=True)
                if not copy.exists():
                    shutil.copyfile(path, copy)
                entry = copies[stat.st_ino] = [copy, copy.stat().st_nlink - 1]
            target = entry[0]
            entry[1] += 1
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(target, folder / rel)
    return folder


def point_recipe(archive: str, million_refs: int | None, where: str, folder: Path, endpoint: str | None,
                 kinds: list[str] | None = None) -> tuple[str, dict]:
    """(dataset id, recipe) of one benchmark point: the files linked in
    `folder`, listed (locally, or through the S3 endpoint serving it), the
    recipe's output kinds or `kinds`."""
    doc = recipe_doc(archive)
    size = "all" if million_refs is None else f"{million_refs}m"
    dataset = f"scale-{archive}-{size}-{where}" + ("-" + "-".join(kinds) if kinds else "")
    if kinds:
        doc["output"]["kinds"] = kinds
    doc["id"] = dataset
    doc["title"] = f"{doc['title']} [{size} refs, {where}]"
    doc["source"].pop("synthetic", None)  # the point's folder of links, made by this script
    doc["source"]["url"] = str(folder)
    if where == "s3":
        assert endpoint is not None
        host = endpoint.removeprefix("http://")
        doc["source"]["url"] = "s3://archive"
        doc["source"]["store_options"] = {"endpoint": endpoint, "skip_signature": True, "region": "us-east-1",
                                          "client_options": {"allow_http": True}}
        doc["source"]["gdal_config"] = {"AWS_S3_ENDPOINT": host, "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
                                        "AWS_NO_SIGN_REQUEST": "YES", "AWS_REGION": "us-east-1"}
        # fsspec's S3 would need s3fs (not a dependency): GDAL is the reader checked.
        doc.setdefault("validation", {})["second_reader"] = False
    return dataset, doc


def point_files(archive: str, million_refs: int | None) -> int:
    """Files of a point: GHRSST days holding about `million_refs` M references, or the whole archive."""
    total = len(archive_files(archive))
    if million_refs is None:
        return total
    if archive != GHRSST:
        raise SystemExit(f"subsets are by GHRSST days; {archive} runs whole")
    return min(round(million_refs * 1e6 / GHRSST_REFS_PER_DAY), total)


def fixture_spec(name: str) -> dict:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    return config["fixtures"]["sets"][name]


@contextlib.contextmanager
def source_server(folder: Path, where: str) -> Iterator[str | None]:
    if where == "local":
        yield None
        return
    from chunkindex.testing.servers import FolderS3Server

    with FolderS3Server(folder, "archive") as server:
        yield server.endpoint


def step_figures(benchmarks: Path, since: float = 0.0) -> dict[str, dict[str, float]]:
    """Per step: wall seconds (first start to last end), summed job seconds,
    jobs, and the largest max_rss (MB) of its jobs, from the benchmark TSVs
    of jobs that ended after `since` (a Unix time)."""
    jobs: dict[str, list[tuple[float, float, float]]] = {}
    for path in sorted(benchmarks.glob("*.tsv")):
        end = path.stat().st_mtime  # written when the job ends
        if end < since:
            continue
        with open(path) as handle:
            row = list(csv.DictReader(handle, delimiter="\t"))[-1]
        seconds = float(row["s"])
        rss = float(row["max_rss"]) if row["max_rss"] not in ("", "NA", "-") else 0.0
        jobs.setdefault(path.stem.split("-")[0], []).append((end - seconds, end, rss))
    return {step: {"wall_s": max(j[1] for j in runs) - min(j[0] for j in runs),
                   "job_s": sum(j[1] - j[0] for j in runs), "jobs": len(runs),
                   "max_rss_mb": max(j[2] for j in runs)}
            for step, runs in jobs.items()}


def run_point(archive: str, million_refs: int | None, where: str, out: Path, keep: bool, cores: int,
              until: str | None, append: bool = False, kinds: list[str] | None = None) -> list[dict]:
    """One benchmark point; with `append`, first without its last file, then
    with it (the workflow appends it: a second run, measured on its own)."""
    files = point_files(archive, million_refs)
    folder = out / "archives" / f"{archive}-{million_refs or 'all'}"
    shutil.rmtree(folder, ignore_errors=True)
    entries = []
    folder.mkdir(parents=True)
    try:
        # One server for both runs: the same endpoint, so the same recipe.
        with source_server(folder, where) as endpoint:
            if append:
                link_archive(archive, files - 1, folder)
                entries.append(_run(archive, million_refs, where, folder, endpoint, out, True, cores, until,
                                    kinds=kinds))
            link_archive(archive, files, folder)
            entries.append(_run(archive, million_refs, where, folder, endpoint, out, keep, cores, until,
                                appending=append, kinds=kinds))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return entries


def _run(archive: str, million_refs: int | None, where: str, folder: Path, endpoint: str | None, out: Path,
         keep: bool, cores: int, until: str | None, appending: bool = False, kinds: list[str] | None = None) -> dict:
    dataset, doc = point_recipe(archive, million_refs, where, folder, endpoint, kinds)
    recipes, results = out / "recipes", out / "runs"
    recipes.mkdir(parents=True, exist_ok=True)
    recipe = recipes / f"{dataset}.yaml"
    text = yaml.safe_dump(doc, sort_keys=False)
    if not appending or not recipe.is_file() or recipe.read_text() != text:
        recipe.write_text(text)  # (unchanged for an append: a new recipe would redo every batch)
    if not appending:
        for path in (results / dataset, results / "benchmarks" / dataset, results / "logs" / dataset):
            shutil.rmtree(path, ignore_errors=True)
    command = [SNAKEMAKE, "--cores", str(cores), "--rerun-triggers", "mtime",
               "--config", f"dataset={dataset}", f"recipes_dir={recipes}", f"results_dir={results}"]
    if until:
        command += ["--until", until]
    if appending:
        command += ["--forcerun", "list_sources"]  # re-list the grown archive, as a nightly run would
    print(f"[{time.strftime('%H:%M:%S')}] {dataset}{' (append)' if appending else ''}: "
          f"{' '.join(command[1:])}", flush=True)
    since = time.time()
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    total = time.perf_counter() - start
    (out / "logs").mkdir(exist_ok=True)
    name = dataset + ("+1file" if appending else "")
    (out / "logs" / f"{name}.log").write_text(done.stdout + done.stderr)
    figures = step_figures(results / "benchmarks" / dataset, since)
    summary = results / dataset / "index" / f"{dataset}.summary.json"
    refs = json.loads(summary.read_text())["refs"] if summary.is_file() else None
    manifest = results / dataset / "manifest.parquet"
    files = None
    if manifest.is_file():
        import pyarrow.parquet as pq

        files = pq.read_metadata(manifest).num_rows
    disk = {name: _size(results / dataset / name) for name in ("headers", "index")}
    entry = {"dataset": name, "append": appending, "kinds": kinds, "archive": archive, "where": where, "target_m": million_refs,
             "files": files, "refs": refs, "total_s": total, "ok": done.returncode == 0, "steps": figures,
             "disk_bytes": disk, "until": until, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    if done.returncode != 0:
        entry["error"] = (done.stderr or done.stdout)[-2000:]
        print(f"  failed (log {out / 'logs' / (name + '.log')}):\n{entry['error'][-800:]}", flush=True)
    if not keep:
        for part in ("headers", "index", "batches", "validation"):
            shutil.rmtree(results / dataset / part, ignore_errors=True)
    return entry


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def load(out: Path) -> list[dict]:
    path = out / "scale.json"
    return json.loads(path.read_text()) if path.is_file() else []


def save(out: Path, entries: list[dict]) -> None:
    tmp = out / "scale.json.partial"
    tmp.write_text(json.dumps(entries, indent=1))
    os.replace(tmp, out / "scale.json")


def latest(entries: list[dict]) -> list[dict]:
    """The last run of each dataset, by references."""
    by_dataset = {e["dataset"]: e for e in entries}
    return sorted(by_dataset.values(),
                  key=lambda e: (e["archive"] != GHRSST, e["where"], bool(e.get("append")), e["refs"] or 0))


def expected_refs(entry: dict) -> float:
    """The run's references (from its write summary; for a run that stopped
    before, as many as the same archive's complete run of as many files)."""
    if entry["refs"]:
        return entry["refs"]
    if entry["archive"] == GHRSST:
        return (entry["files"] or 0) * GHRSST_REFS_PER_DAY
    # BRAN: 4 variables x 51 levels x 5 x 12 chunks a day
    return sum(monthrange(y, m)[1] for y, m in _months(entry["files"] or 0)) * 4 * 51 * 60


def _months(count: int) -> list[tuple[int, int]]:
    from chunkindex.synthetic.bran_scale import months

    return months(str(fixture_spec(BRAN)["start"]), count)


def table(entries: list[dict]) -> str:
    """Per run and step: wall time, s per M references, peak RSS of its
    largest job and that against 2 GB; the ratios to the smallest run."""
    lines = []
    header = (f"{'archive':<17} {'where':<5} {'files':>6} {'refs':>6} {'step':<13} {'jobs':>4} {'wall s':>8} "
              f"{'s/M refs':>9} {'peak MB':>8} {'of 2 GB':>8}  {'time x':>7} {'refs x':>7} {'mem x':>6}")
    lines += [header, "-" * len(header)]
    base: dict[tuple[str, str, str], tuple[float, float, float]] = {}
    for entry in latest(entries):
        refs = expected_refs(entry)
        steps = sorted(entry["steps"].items(),
                       key=lambda kv: STEP_ORDER.index(kv[0]) if kv[0] in STEP_ORDER else len(STEP_ORDER))
        for step, fig in steps:
            label = entry["archive"] + (" [" + ",".join(entry["kinds"]) + "]" if entry.get("kinds") else "")
            key = (label, entry["where"] + ("+1" if entry.get("append") else ""), step)
            sampled = fig["max_rss_mb"] >= UNSAMPLED_MB
            base.setdefault(key, (fig["wall_s"], refs, fig["max_rss_mb"]))
            if sampled and base[key][2] < UNSAMPLED_MB:
                base[key] = (base[key][0], base[key][1], fig["max_rss_mb"])
            b_time, b_refs, b_mem = base[key]
            over = " !" if fig["max_rss_mb"] > LIMIT_MB else ""
            where = entry["where"] + ("+1" if entry.get("append") else "")
            memory = (f"{fig['max_rss_mb']:>8.0f} {fig['max_rss_mb'] / LIMIT_MB:>7.0%}{over:<2}" if sampled
                      else f"{'-':>8} {'-':>7}  ")
            mem_x = f"{fig['max_rss_mb'] / b_mem:>6.2f}" if sampled and b_mem >= UNSAMPLED_MB else f"{'-':>6}"
            lines.append(
                f"{label:<17} {where:<5} {entry['files'] or 0:>6} {refs / 1e6:>5.0f}M {step:<13} "
                f"{fig['jobs']:>4} {fig['wall_s']:>8.1f} {fig['wall_s'] / max(refs / 1e6, 1e-9):>9.3f} "
                f"{memory}{fig['wall_s'] / max(b_time, 1e-9):>7.1f} {refs / max(b_refs, 1):>7.1f} {mem_x}")
        status = "ok" if entry["ok"] else f"FAILED ({(entry.get('error') or '').strip().splitlines()[-1:]})"
        lines.append(f"{'':<17} {'':<5} {'':>6} {'':>6} {'whole run':<13} {'':>4} {entry['total_s']:>8.1f} "
                     f"{entry['total_s'] / max(refs / 1e6, 1e-9):>9.3f}   {status}"
                     + (f" (until {entry['until']})" if entry.get("until") else ""))
    lines.append("time x, refs x, mem x: against the smallest run of the same archive, place and step "
                 "(linear or better: time x <= refs x; flat memory: mem x ~ 1). '!' marks a job over 2 GB; '-': "
                 "a job too short (< ~1 s) for Snakemake's benchmark to sample its memory.")
    return "\n".join(lines)


def plot(entries: list[dict], path: Path) -> Path:
    import matplotlib
    import matplotlib.ticker
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(13, 5.2))
    colours = {step: f"C{i}" for i, step in enumerate(STEP_ORDER)}
    styles = {"local": "-o", "s3": "--s"}
    series: dict[tuple[str, str, str], list[tuple[float, float, float]]] = {}
    for entry in latest(entries):
        if entry.get("append") or entry.get("kinds"):  # in the table only (other work than the series)
            continue
        refs = expected_refs(entry)
        for step, fig_ in entry["steps"].items():
            series.setdefault((entry["archive"], entry["where"], step), []).append(
                (refs / 1e6, fig_["wall_s"], fig_["max_rss_mb"] if fig_["max_rss_mb"] >= UNSAMPLED_MB else np.nan))
    for (archive, where, step), points in sorted(series.items()):
        points.sort()
        x = [p[0] for p in points]
        label = f"{step} ({where}{'' if archive == GHRSST else ', BRAN'})"
        kwargs = {"color": colours.get(step, "k"), "label": label, "alpha": 0.9}
        style = styles[where] if archive == GHRSST else ("*" if where == "local" else "x")
        markersize = 12 if archive != GHRSST else 5
        ax_time.plot(x, [p[1] for p in points], style, markersize=markersize, **kwargs)
        ax_mem.plot(x, [p[2] for p in points], style, markersize=markersize, **kwargs)
    xs = [p[0] for pts in series.values() for p in pts] or [1.0]
    times = [p[1] for pts in series.values() for p in pts if p[1] > 0] or [1.0]
    # Time on log-log axes (a slope of 1 is linear growth; grey guides), memory linear.
    low, high = min(xs) * 0.8, max(xs) * 1.25
    for level in np.geomspace(min(times), max(times), 4):
        ax_time.plot([low, high], [level, level * high / low], color="grey", linewidth=0.6, linestyle=":")
    ax_time.set_xscale("log")
    ax_time.set_yscale("log")
    ax_time.set_xlim(low, high)
    ticks = [t for t in (10, 20, 50, 100, 200, 300, 600) if low <= t <= high]
    ax_time.set_xticks(ticks, [str(t) for t in ticks])
    ax_time.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_time.set_ylim(min(times) * 0.5, max(times) * 2)
    ax_mem.axhline(LIMIT_MB, color="red", linestyle=":", label="2 GB per job")
    ax_mem.set_xlim(0, max(xs) * 1.05)
    ax_mem.set_ylim(0, max(LIMIT_MB * 1.1, np.nanmax([p[2] for pts in series.values() for p in pts]) * 1.1)
                    if series else LIMIT_MB * 1.1)
    for ax, title, unit in ((ax_time, "wall time per step (log-log; dotted: proportional to references)",
                             "seconds"),
                            (ax_mem, "peak RSS of the step's largest job", "MB")):
        ax.set_xlabel("chunk references (millions)")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    ax_mem.legend(fontsize=7, ncol=2, loc="upper left")
    fig.suptitle("chunkindex workflow at scale (GHRSST x10 subsets: lines; BRAN-like full archive: stars/crosses)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", default="", help="M references per GHRSST point, comma-separated; "
                        "'all' for the whole (listed) archive")
    parser.add_argument("--where", default="local,s3", help="local, s3 or both")
    parser.add_argument("--bran", action="store_true", help="also the BRAN-like full archive")
    parser.add_argument("--until", help="stop each run after this rule (e.g. headers_batch to leave write out)")
    parser.add_argument("--append", action="store_true", help="index all files but the last, then append it "
                        "(measures the append path on the big index)")
    parser.add_argument("--kinds", help="output kinds instead of the recipe's (comma-separated), e.g. "
                        "kerchunk-parquet,footprints")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "results/bench/scale"))
    parser.add_argument("--keep", action="store_true", help="keep each run's header batches and index")
    parser.add_argument("--report-only", action="store_true", help="only print the table and draw the plot")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    entries = load(out)
    if not args.report_only:
        runs: list[tuple[str, int | None]] = []
        for point in filter(None, args.points.split(",")):
            runs.append((GHRSST, None if point == "all" else int(point)))
        if args.bran:
            runs.append((BRAN, None))
        for archive, million in runs:
            for where in args.where.split(","):
                for entry in run_point(archive, million, where, out, args.keep, args.cores, args.until,
                                       args.append, args.kinds.split(",") if args.kinds else None):
                    entries.append(entry)
                    save(out, entries)
    print(table(entries))
    print(f"plot: {plot(entries, out / 'scale.png')}")


if __name__ == "__main__":
    main()
