"""Helpers shared by the Snakemake rules and their thin scripts."""

from __future__ import annotations

import importlib.abc
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from chunkindex.recipe import Recipe
from chunkindex.tables import read_parquet, write_parquet

BATCH_FORMAT = "{:05d}"


def index_outputs(results: str, dataset: str, recipe: Recipe) -> dict[str, str]:
    """Named outputs of the write rule, by the recipe's output kinds."""
    names = {
        "kerchunk-parquet": ("kerchunk_parquet", f"{results}/index/{dataset}.parq"),
        "kerchunk-json": ("kerchunk_json", f"{results}/index/{dataset}.json"),
        "flat-parquet": ("flat_parquet", f"{results}/index/{dataset}.refs.parquet"),
        "footprints": ("footprints_parquet", f"{results}/index/{dataset}.footprints.parquet"),
    }
    outputs = dict(names[kind] for kind in recipe.output.kinds)
    if "footprints" in recipe.output.kinds:
        outputs["footprints_gpkg"] = f"{results}/index/{dataset}.footprints.gpkg"
    outputs["summary"] = f"{results}/index/{dataset}.summary.json"
    outputs["state"] = f"{results}/index/{dataset}.state.parquet"
    return outputs


def batch_ids(manifest: str | Path) -> list[str]:
    """Batch ids of a listing, from the batch count stored in its metadata."""
    meta = pq.read_schema(manifest).metadata or {}
    count = int(meta.get(b"chunkindex.batches", b"0"))
    return [BATCH_FORMAT.format(i) for i in range(count)]


def write_batches(manifest: pa.Table, folder: str | Path, batch_size: int) -> int:
    """Split `manifest` into batch files of `batch_size` rows.

    A batch file is rewritten only when its rows changed (path, size, etag,
    last-modified are the cache key), so Snakemake re-runs only its header job.
    Returns the number of batches.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    count = (manifest.num_rows + batch_size - 1) // batch_size
    for i in range(count):
        batch = manifest.slice(i * batch_size, batch_size)
        path = folder / f"batch-{BATCH_FORMAT.format(i)}.parquet"
        if path.exists():
            try:
                if read_parquet(path).equals(batch):
                    continue
            except (pa.ArrowInvalid, OSError):
                pass
        write_parquet(batch, path)
    for stale in folder.glob("batch-*.parquet"):
        if int(stale.stem.split("-")[1]) >= count:
            stale.unlink()
    return count


def with_batch_count(table: pa.Table, count: int) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta[b"chunkindex.batches"] = str(count).encode()
    return table.replace_schema_metadata(meta)


def setup_logging(log_file: str | None) -> logging.Logger:
    """Log to the rule's log file and to stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return logging.getLogger("chunkindex")


def progress_logger(log: logging.Logger, what: str, every_seconds: float = 5.0) -> Callable[[int, int], None]:
    """A progress callback that logs `done/total` at most every few seconds."""
    last = [0.0]
    start = time.monotonic()

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= every_seconds:
            last[0] = now
            rate = done / max(now - start, 1e-9)
            log.info("%s: %d/%d (%.0f/s)", what, done, total, rate)

    return report


def without_huge_pages() -> None:
    """Stop numpy asking for transparent huge pages on large arrays.

    Where the kernel compacts memory for such requests (THP defrag
    "madvise", as here), first touching a fresh large array can stall in
    compaction: the write step's short-lived tile arrays took 1.4 s to
    assemble with it and 0.65 s without (measured, same data).
    """
    import numpy as np

    setter = getattr(getattr(np, "_core", np).multiarray, "_set_madvise_hugepage", None)
    if setter is not None:
        setter(False)


class _PandasBlocker(importlib.abc.MetaPathFinder):
    """Refuses to import pandas (see `without_pandas`)."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is kept out of this workflow step (chunkindex.workflow.without_pandas)",
                                      name=name)


def without_pandas() -> None:
    """Keep pandas out of this process.

    pyarrow imports pandas, when it is installed, on its first array
    conversion (~0.35 s here), and works without it. The list, headers and
    write steps never use pandas and run once per job, so their scripts call
    this; validation (fsspec's reference reader) needs pandas and does not.
    """
    if "pandas" not in sys.modules and not any(isinstance(f, _PandasBlocker) for f in sys.meta_path):
        sys.meta_path.insert(0, _PandasBlocker())


def run_step(log_file: str | None, step: Callable[[logging.Logger], Any], exit_when_done: bool = False,
             needs_pandas: bool = True) -> Any:
    """Run a script's step with logging; errors are logged as one clear line.

    `exit_when_done` ends the (script) process right after a successful step:
    async-tiff/obstore's Rust runtime threads can abort the interpreter while
    it finalises ("PyGILState_Release: thread state must be current"), which
    would fail a job whose outputs are already complete. Steps that do not
    `needs_pandas` run without it (see `without_pandas`).
    """
    if not needs_pandas:
        without_pandas()
    without_huge_pages()
    log = setup_logging(log_file)
    try:
        result = step(log)
    except Exception as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        raise
    if exit_when_done:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return result
