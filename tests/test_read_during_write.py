"""Readers never see half an update: while a day is appended to the index
and the index is then rewritten (back to three days, from another copy of
the archive), readers in other processes open and read it over and over
(GDAL's ZARR driver on the Kerchunk Parquet folder, GDAL's CRI driver and
chunkindex's CRI reader on the CRI file), and every read is exactly the old
index or the new one (tests/reader_loop.py is the reader)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_append import LAST_DAY, _add_last_day, _archive, _recipe, _run

READERS = ("zarr", "gdal-cri", "py-cri", "zarr-long-lived")
CYCLES = 1  # an append, then a rewrite
SCRIPT = Path(__file__).with_name("reader_loop.py")


def _index(kind: str, work: Path) -> str:
    return str(work / ("index.cri.parquet" if kind.endswith("cri") else "index.parq"))


def _expected(work: Path) -> dict[str, str]:
    """Each reader's digest of the index as it is now (read in a new
    process); the readers read the same samples."""
    reads = {}
    for kind in READERS[:3]:
        done = subprocess.run([sys.executable, str(SCRIPT), "once", kind, _index(kind, work)], capture_output=True,
                              text=True, check=True)
        reads[kind] = json.loads(done.stdout)
        assert "error" not in reads[kind], reads[kind]
        assert reads[kind]["values"] == reads["zarr"]["values"], kind
    return {kind: reads[kind.removesuffix("-long-lived")]["digest"] for kind in READERS}


def _wait_for_reads(logs: dict[str, Path], readers: list[subprocess.Popen], since: float) -> None:
    """Until every reader has done a whole read that started after `since`."""
    def done(log: Path) -> bool:
        lines = log.read_text().split("\n")[:-1] if log.is_file() else []  # whole lines only
        return any(json.loads(line)["start"] > since for line in lines)

    deadline = time.monotonic() + 300
    while not all(done(log) for log in logs.values()):
        assert all(r.poll() is None for r in readers), "a reader stopped"
        assert time.monotonic() < deadline, "the readers never read"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reads_during_writes(tmp_path_factory, fixtures_root) -> tuple[dict[str, list[dict]], dict, list]:
    """Appends and rewrites with the reader loops running: every read, the
    digests of the old (3 days) and new (4 days) index, the write windows.

    Two copies of the archive take turns: a day is appended to the indexed
    copy, then the index is rewritten from the other copy (another recipe,
    three days), so no file the index refers to is ever deleted under a
    reader."""
    tmp = tmp_path_factory.mktemp("read-during-write")
    sides = [tmp / "a", tmp / "b"]
    archives = [_archive(side, fixtures_root, with_last_day=False) for side in sides]
    recipes = [_recipe(side, archive, kinds=["kerchunk-parquet", "cri-parquet"])
               for side, archive in zip(sides, archives)]
    work = tmp / "work"
    assert _run(recipes[0], work).appended_files is None
    old = _expected(work)
    stop = tmp / "stop"
    logs = {kind: tmp / f"reads-{kind}.jsonl" for kind in READERS}
    readers = [subprocess.Popen([sys.executable, str(SCRIPT), kind, _index(kind, work), str(stop), str(logs[kind])])
               for kind in READERS]
    windows: list[tuple[str, float, float]] = []
    new: dict[str, str] = {}
    try:
        _wait_for_reads(logs, readers, since=0)
        for cycle in range(CYCLES):
            side = cycle % 2
            _add_last_day(archives[side], fixtures_root)
            start = time.time()
            assert _run(recipes[side], work).appended_files == 2
            windows.append(("append", start, time.time()))
            new = new or _expected(work)
            _wait_for_reads(logs, readers, since=windows[-1][2])  # each reader reads the new index once
            for path in archives[1 - side].rglob(f"{LAST_DAY}*.tif"):  # not referred to by the index now
                path.unlink()
            start = time.time()
            assert _run(recipes[1 - side], work).appended_files is None  # another recipe: rewritten
            # From the new folder's last file written to the end of the step:
            # the folder is swapped for the old one within that span.
            windows.append(("rewrite", start, time.time()))
            windows.append(("rewrite commit", (work / "index.parq/.zmetadata").stat().st_mtime, windows[-1][2]))
        _wait_for_reads(logs, readers, since=windows[-1][2])  # and the rewritten one
    finally:
        stop.touch()
        for reader in readers:
            reader.wait(timeout=60)
    assert _expected(work) == old
    reads = {kind: [json.loads(line) for line in logs[kind].read_text().splitlines()] for kind in READERS}
    return reads, {"old": old, "new": new}, windows


def _outcomes(reads, states, windows, kind: str) -> list[str]:
    assert states["old"][kind] != states["new"][kind]
    seen = {states["old"][kind]: "old", states["new"][kind]: "new"}
    # The loops really overlapped the writes.
    for what in ("append", "rewrite"):
        during = [r for r in reads[kind] for w, a, b in windows if w == what and r["start"] < b and r["end"] > a]
        assert during, f"no {kind} read overlapped an {what}"
    return [seen.get(r.get("digest"), r.get("error") or f"a mix: shape {r['shape']}") for r in reads[kind]]


def _spans(read: dict, windows: list, what: str) -> bool:
    return any(w == what and read["start"] < b and read["end"] > a for w, a, b in windows)


@pytest.mark.slow
@pytest.mark.parametrize("kind", READERS[1:3])
def test_every_cri_read_is_the_old_or_the_new_index(reads_during_writes, kind):
    """The CRI file is replaced in one rename and a reader holds the file
    it opened: every read, whenever it runs, is one index or the other."""
    outcomes = _outcomes(*reads_during_writes, kind)
    assert set(outcomes) == {"old", "new"}, sorted(set(outcomes) - {"old", "new"})


@pytest.mark.slow
def test_every_kerchunk_read_is_the_old_or_the_new_index(reads_during_writes):
    """A new process per read. An append renames `.zmetadata` last, and the
    rows an old `.zmetadata` reaches are unchanged in the new record files:
    reads during appends are one index or the other. A rewrite swaps the
    folder in one step (renameat2), so every read opened before it reads the
    old index and every read opened after it the new one; only a read that
    has opened the old `.zmetadata` and reaches a record file after the
    swap may not (GDAL opens record files lazily, by path), and those are
    left out (and counted)."""
    reads, states, windows = reads_during_writes
    outcomes = _outcomes(reads, states, windows, "zarr")
    kept = [o for o, r in zip(outcomes, reads["zarr"]) if not _spans(r, windows, "rewrite commit")]
    assert set(kept) == {"old", "new"}, sorted(set(kept) - {"old", "new"})


@pytest.mark.slow
def test_a_long_lived_gdal_process_keeps_the_kerchunk_metadata_it_first_read(reads_during_writes):
    """GDAL 3.13 caches a Kerchunk Parquet folder's `.zmetadata` for the
    life of the process: a process that opened the old index reads the old
    index (the old rows of the appended record files are unchanged), never
    the new one. Should GDAL drop that cache on close, this test will say
    so (and the reader loop can run in one process)."""
    outcomes = _outcomes(*reads_during_writes, "zarr-long-lived")
    assert set(outcomes) == {"old"}, sorted(set(outcomes))


@pytest.mark.parametrize("swap", [True, False])
def test_a_folder_is_replaced_by_the_new_one_in_one_step(tmp_path, monkeypatch, swap):
    """commit() swaps the new folder with the old one (renameat2 on this
    machine's file system), or where it cannot, renames the old one aside."""
    from chunkindex import atomic

    target = tmp_path / "index.parq"
    target.mkdir()
    (target / ".zmetadata").write_text("old")
    old_inode = target.stat().st_ino
    swapped: list[bool] = []
    exchange = atomic._exchange

    def spy(a: Path, b: Path) -> bool:
        swapped.append(exchange(a, b) if swap else False)
        return swapped[-1]

    monkeypatch.setattr(atomic, "_exchange", spy)
    with atomic.atomic_path(target, folder=True) as staging:
        (staging / ".zmetadata").write_text("new")
        new_inode = staging.stat().st_ino
    assert swapped == [swap]
    assert (target / ".zmetadata").read_text() == "new" and target.stat().st_ino == new_inode != old_inode
    assert [p.name for p in tmp_path.iterdir()] == ["index.parq"]
