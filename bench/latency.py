"""Benchmark: the COG pipeline under cloud-like latency.

Serves the GHRSST-scale archive (see ghrsst_scale.py) from a local HTTP
server with Range support that waits a fixed delay on every request, lists it
from the recipe's template (HEAD per file: HTTP cannot list) and reads every
header with bounded concurrency, then writes Kerchunk Parquet. Prints the
time per step and how close each step comes to its bound, requests x delay /
concurrency. A run without delay shows the server is not the bottleneck.

    .venv/bin/python bench/latency.py [--files 8660] [--delay 0.02] [--concurrency 128]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ghrsst_scale import make_archive, timed_steps


def run(archive: Path, files: int, delay: float, concurrency: int, workdir: Path) -> dict:
    from dataclasses import replace

    from chunkindex.pipeline import quick_recipe
    from chunkindex.testing.servers import FastHttpServer

    end = dt.date(2002, 6, 1) + dt.timedelta(days=files - 1)
    with FastHttpServer(archive, delay=delay) as http:
        recipe = quick_recipe(
            "latency", http.url + "/", variables=("analysed_sst",), units="days since 1970-01-01",
            pattern="{time:%Y}/{time:%m}/{time:%d}/{time:%Y%m%d}090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1_{variable}.tif",
            source={"template": {"start": "2002-06-01", "end": end.isoformat(), "step": "day"}},
            headers={"concurrency": concurrency})
        recipe = replace(recipe, output=replace(recipe.output, overviews=False))
        timings, _ = timed_steps(recipe, workdir)
    # One HEAD per file to list (HTTP cannot list); one GET per file for its
    # header (the first file's measured header size is prefetched at once).
    requests = {"list": files, "headers": files + 1, "assemble": 0, "kerchunk_parquet": 0}
    steps = {step: {"seconds": seconds, "requests": requests[step],
                    "bound_seconds": requests[step] * delay / concurrency} for step, seconds in timings.items()}
    return {"files": files, "delay": delay, "concurrency": concurrency, "steps": steps,
            "total_seconds": sum(timings.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=8660)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds added to every request")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--workdir", default=str(Path.home() / ".cache/chunkindex/bench"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(args.workdir)
    archive = make_archive(root, args.files)
    results = [run(archive, args.files, d, args.concurrency, root) for d in (0.0, args.delay)]
    if args.json:
        print(json.dumps(results))
        return
    for figures in results:
        print(f"delay {figures['delay'] * 1000:.0f} ms, concurrency {figures['concurrency']}, {figures['files']:,} files: "
              f"total {figures['total_seconds']:.2f} s")
        for name, step in figures["steps"].items():
            closeness = f", bound {step['bound_seconds']:.2f} s ({step['bound_seconds'] / step['seconds']:.0%} of the time)" if step["requests"] and figures["delay"] else ""
            print(f"  {name:<19} {step['seconds']:6.2f} s  {step['requests']:>6,} requests{closeness}")
    delayed = results[1]
    work = delayed["total_seconds"]
    print(f"target: step work <= 20 s with {args.delay * 1000:.0f} ms per request: {'met' if work <= 20 else 'NOT met'} ({work:.1f} s)")


if __name__ == "__main__":
    main()
