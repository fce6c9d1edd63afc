"""Benchmark: `chunkindex index` as a whole process (start-up and imports
included), as a user runs it, on 500 full-size GHRSST-like COGs and on the
8,660-file GHRSST-scale archive; beside it, VirtualiZarr + virtual-tiff's
whole process on the same 500 files (its own venv, bench/virtualizarr_compare.py).

    .venv/bin/python bench/cli_process.py [--repeat 3] [--skip-virtualizarr] [--json]

Each figure is the median of `--repeat` runs into a fresh folder: wall time,
and CPU time (user + system) - on a shared, loaded machine the CPU time is
what the process costs, the wall time what it waited too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ghrsst_scale import make_archive

PATTERN = "{time:%Y}/{time:%m}/{time:%d}/{time:%Y%m%d}090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1_{variable}.tif"
REPO = Path(__file__).resolve().parent.parent


def timed_process(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stdout) of one child process."""
    before = os.times()
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = os.times()
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu, done.stdout


def chunkindex_runs(archive: Path, workdir: Path, repeat: int) -> dict:
    """`chunkindex index ARCHIVE --pattern P --variable analysed_sst` run `repeat` times."""
    runs = []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for i in range(repeat):
        out = workdir / f"run-{i}"
        wall, cpu, stdout = timed_process([sys.executable, "-m", "chunkindex", "index", str(archive), "--pattern",
                                           PATTERN, "--variable", "analysed_sst", "--out", str(out), "-q"], env)
        runs.append({"wall": wall, "cpu": cpu, "line": stdout.splitlines()[0]})
    imports = [timed_process([sys.executable, "-c", "import chunkindex.cli, chunkindex.pipeline, "
                              "chunkindex.formats.tiff.assemble, chunkindex.indexes.kerchunk"], env)
               for _ in range(repeat)]
    return {"files": len(list(archive.rglob("*_analysed_sst.tif"))),
            "wall": statistics.median(r["wall"] for r in runs), "cpu": statistics.median(r["cpu"] for r in runs),
            "all_wall": [r["wall"] for r in runs], "all_cpu": [r["cpu"] for r in runs], "output": runs[0]["line"],
            "imports_wall": statistics.median(w for w, _, _ in imports),
            "imports_cpu": statistics.median(c for _, c, _ in imports)}


def virtualizarr_run(archive: Path, root: Path) -> dict:
    """VirtualiZarr + virtual-tiff's whole process on the same files (as bench/virtualizarr_compare.py)."""
    from virtualizarr_compare import VZ_SCRIPT, vz_python

    files = sorted(str(p) for p in archive.rglob("*_analysed_sst.tif"))
    python = vz_python(root)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        wall, cpu, _ = timed_process([str(python), "-c", VZ_SCRIPT, json.dumps(files), str(Path(tmp) / "vz.parq")])
    return {"files": len(files), "wall": wall, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default=str(Path.home() / ".cache/chunkindex/bench"))
    parser.add_argument("--skip-virtualizarr", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON line of figures")
    args = parser.parse_args()
    root = Path(args.workdir)
    root.mkdir(parents=True, exist_ok=True)
    figures: dict = {}
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        # The 500 files VirtualiZarr's comparison reads (DEFLATE), and the ZSTD + predictor archives.
        for name, archive in (("deflate_500", make_archive(root, 500, "DEFLATE", 1)),
                              ("zstd_500", make_archive(root, 500)), ("zstd_8660", make_archive(root, 8660))):
            figures[name] = chunkindex_runs(archive, Path(tmp) / name, args.repeat)
    if not args.skip_virtualizarr:
        figures["virtualizarr_deflate_500"] = virtualizarr_run(make_archive(root, 500, "DEFLATE", 1), root)
    if args.json:
        print(json.dumps(figures))
        return
    for name, fig in figures.items():
        print(f"{name:>26}: {fig['files']:>5} files, wall {fig['wall']:.2f} s, CPU {fig['cpu']:.2f} s"
              + (f" (imports: wall {fig['imports_wall']:.2f} s, CPU {fig['imports_cpu']:.2f} s)"
                 if "imports_wall" in fig else ""))


if __name__ == "__main__":
    main()
