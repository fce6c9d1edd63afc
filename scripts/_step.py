"""Process-level settings of the workflow's Snakemake jobs (scripts/*.py).

Each job is a short-lived Python process that runs one step; these tweaks
belong to such a process, never to the library:

* `without_pandas`: pyarrow imports pandas, when installed, on its first
  array conversion (~0.35 s a job); the list, headers and write steps never
  use it, so their jobs refuse the import.
* `without_huge_pages`: numpy asks for transparent huge pages on large
  arrays; where the kernel compacts memory for them (THP defrag "madvise"),
  the write step's tile arrays took 1.4 s to assemble instead of 0.65 s.
* `run_step(..., exit_when_done=True)`: async-tiff/obstore's Rust runtime
  threads can abort the interpreter while it finalises ("PyGILState_Release:
  thread state must be current") after the outputs are complete, failing
  the job; such jobs end with `os._exit(0)` once the step succeeded.
"""

from __future__ import annotations

import importlib.abc
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Jobs import the chunkindex of this workflow's own repository (as the
# Snakefile does, rules/common.smk), installed or not: a job never runs
# another version of the library than the one its rules were written for.
_REPOSITORY = str(Path(__file__).resolve().parent.parent)
if _REPOSITORY not in sys.path:
    sys.path.insert(0, _REPOSITORY)


def setup_logging(log_file: str | None) -> logging.Logger:
    """Log to the rule's log file and to stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return logging.getLogger("chunkindex")


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
            raise ModuleNotFoundError("pandas is kept out of this workflow step (scripts/_step.py without_pandas)",
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
