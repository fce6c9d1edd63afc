"""Atomic writes: every writer builds its file or folder under a temporary
name in the target's own folder, flushes it to disk and renames it over the
target, so a reader (or a failed step) never sees a half-written output."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path


def staging_path(target: str | Path, tag: str = "partial") -> Path:
    """A hidden temporary sibling of `target` (same folder, so renames are atomic)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent / f".{target.name}.{tag}-{os.getpid()}"


_STAGING = re.compile(r"^\.(?P<name>.+)\.[a-z]+-\d+$")


def leftovers(target: str | Path) -> list[Path]:
    """Temporary paths a killed writer left behind: the staging siblings of
    `target` (`.<name>.<tag>-<pid>`) and, when `target` is a folder, those
    of the files inside it. Only safe to remove when no writer of `target`
    runs (the workflow checks at start, holding Snakemake's lock)."""
    target = Path(target)
    found: list[Path] = []
    if target.parent.is_dir():
        found += [p for p in target.parent.iterdir()
                  if (m := _STAGING.match(p.name)) and m["name"] == target.name]
    if target.is_dir() and not target.is_symlink():
        found += [p for p in target.rglob(".*") if _STAGING.match(p.name)]
    return sorted(found)


def fsync(path: str | Path) -> None:
    """Flush a file, or a folder with everything inside it, to disk.

    Every inode once: hard-linked files (the `_refs_only` variants share
    their array's reference files) need one flush, and every subfolder is
    flushed too, so its entries are on disk before the rename publishes it.
    """
    path = Path(path)
    if path.is_dir():
        seen: set[tuple[int, int]] = set()
        for root, _dirs, files in os.walk(path):
            for name in files:
                item = Path(root) / name
                stat = item.stat()
                if (stat.st_dev, stat.st_ino) not in seen:
                    seen.add((stat.st_dev, stat.st_ino))
                    _fsync_one(item)
            if root != str(path):
                _fsync_one(Path(root))
    _fsync_one(path)


def _fsync_one(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False
    where the C library or the file system cannot."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def commit(staging: str | Path, target: str | Path) -> None:
    """Flush `staging` and rename it over `target` (a file or a folder).

    A file replaces a file in one rename. A folder cannot be renamed over a
    folder: the two are swapped in one step (renameat2), so a reader opening
    the index always finds one, the old or the new; where the file system
    cannot swap, the old folder is renamed aside first (for a moment there
    is no index at the path). The old folder is removed afterwards.
    """
    staging, target = Path(staging), Path(target)
    fsync(staging)
    if staging.is_dir() and (target.exists() or target.is_symlink()):
        if _exchange(staging, target):
            _remove(staging)  # now the old folder
        else:
            retired = staging_path(target, "old")
            os.rename(target, retired)
            os.rename(staging, target)
            _remove(retired)
    else:
        os.replace(staging, target)
    _fsync_one(target.parent)


@contextlib.contextmanager
def atomic_path(target: str | Path, folder: bool = False, tag: str = "partial") -> Iterator[Path]:
    """Yield a temporary path to write `target` at; on success it replaces
    `target`, on failure it is removed. With `folder`, the temporary path
    is an empty folder."""
    staging = staging_path(target, tag)
    _remove(staging)
    if folder:
        staging.mkdir()
    try:
        yield staging
        commit(staging, target)
    except BaseException:
        _remove(staging)
        raise


def write_text(target: str | Path, text: str) -> None:
    """Write a small text file (a summary, a report) atomically."""
    with atomic_path(target) as staging:
        staging.write_text(text)
