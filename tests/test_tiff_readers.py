"""The two TIFF header readers (chunkindex's numpy tag reader and async-tiff)
give identical level rows on every TIFF fixture, locally and through an
object store, and header templates are reused only for identical layouts."""

import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_FIXTURES
from obstore.store import LocalStore, MemoryStore

from chunkindex.formats.tiff.headers import (
    LEVELS_SCHEMA,
    ReadSettings,
    TiffHeaderError,
    read_headers,
)
from chunkindex.recipe import default_headers

DEFAULTS = ReadSettings.from_recipe(default_headers())


def _tiffs(fixtures_root: Path) -> list[Path]:
    files = sorted((fixtures_root / "edge-cases/tiff").glob("*.tif"))
    for folder in ("real-cogs", "kerchunk-tests"):
        root = SHARED_FIXTURES / folder
        if root.exists():
            files += sorted(p for p in root.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))
    return files


def _read(path: Path, reader: str, store=None, settings=None):
    store = store or LocalStore(str(path.parent))
    settings = settings or DEFAULTS
    try:
        return read_headers(store, [path.name], [path.stat().st_size], [7], settings, reader=reader)
    except TiffHeaderError as exc:
        return str(exc)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_numpy_and_async_tiff_readers_agree_on_every_fixture(fixtures_root):
    files = _tiffs(fixtures_root)
    assert len(files) >= 8
    compared = refused_by_both = 0
    for path in files:
        mine, theirs = _read(path, "numpy"), _read(path, "async-tiff")
        if isinstance(theirs, str) and "PanicException" in theirs:
            assert not isinstance(mine, str), f"{path}: {mine}"  # async-tiff panics where the numpy reader reads
            continue
        if isinstance(mine, str) or isinstance(theirs, str):
            assert isinstance(mine, str) and isinstance(theirs, str), f"{path}: {mine!r} vs {theirs!r}"
            assert path.name in mine and path.name in theirs
            refused_by_both += 1
            continue
        for name in LEVELS_SCHEMA.names:
            assert _same(mine[name].to_pylist(), theirs[name].to_pylist()), f"{path.name}: {name}"
        compared += 1
    assert compared >= 5 and refused_by_both >= 2


def test_numpy_reader_through_an_object_store_with_small_fetches(fixtures_root):
    """A prefetch smaller than the header makes the reader fetch the rest
    range by range; the rows are those of a local read."""
    for name in ("bigtiff.tif", "big-endian.tif", "sparse.tif", "multiband-band.tif"):
        path = fixtures_root / "edge-cases/tiff" / name
        store = MemoryStore()
        store.put(name, path.read_bytes())
        remote = _read(path, "numpy", store, dataclasses.replace(DEFAULTS, prefetch=1024))
        local = _read(path, "numpy")
        assert remote.equals(local), name


def _copy_with_new_tile_table(src: Path, dst: Path, shift: int) -> None:
    """The same layout, but every tile's offset moved by `shift` bytes
    (the tiles themselves are not needed to read a header)."""
    import tifffile

    shutil.copy(src, dst)
    with tifffile.TiffFile(dst, mode="r+b") as tif:
        for page in tif.pages:
            tag = page.tags.get(324) or page.tags.get(273)
            tag.overwrite([o + shift if o else 0 for o in tag.value])


def test_templates_reuse_a_layout_only_when_all_but_the_tile_tables_match(fixtures_root, tmp_path, monkeypatch):
    from chunkindex.formats.tiff.ifd import HeaderTemplates

    hits = []
    match = HeaderTemplates.match
    monkeypatch.setattr(HeaderTemplates, "match", lambda self, data: hits.append(match(self, data)) or hits[-1])
    src = fixtures_root / "edge-cases/tiff/bigtiff.tif"
    folder = tmp_path / "archive"
    folder.mkdir()
    shutil.copy(src, folder / "a.tif")
    _copy_with_new_tile_table(src, folder / "b.tif", 0)
    _copy_with_new_tile_table(src, folder / "c.tif", 8)
    # d.tif: another geotransform (a different tiepoint), same layout otherwise
    import tifffile

    shutil.copy(src, folder / "d.tif")
    with tifffile.TiffFile(folder / "d.tif", mode="r+b") as tif:
        tie = list(tif.pages[0].tags[33922].value)
        tie[3] += 1000.0
        tif.pages[0].tags[33922].overwrite(tie)
    names = ["a.tif", "b.tif", "c.tif", "d.tif"]
    sizes = [(folder / n).stat().st_size + 1000 for n in names]  # room for the shifted tiles
    store = LocalStore(str(folder))
    table = read_headers(store, names, sizes, [0, 1, 2, 3], DEFAULTS)
    assert [h is not None for h in hits] == [False, True, True, False]  # d.tif is parsed in full
    one_by_one = [read_headers(store, [n], [s], [i], DEFAULTS) for i, (n, s) in enumerate(zip(names, sizes))]
    for i, alone in enumerate(one_by_one):
        rows = table.filter(np.asarray(table["file_id"]) == i)
        assert rows.equals(alone), names[i]
    offsets = {i: rows["tile_offsets"][0].as_py() for i, rows in enumerate(one_by_one)}
    assert [o + 8 if o else 0 for o in offsets[0]] == offsets[2]
    gt = {i: rows["geotransform"][0].as_py() for i, rows in enumerate(one_by_one)}
    assert gt[3][0] == gt[0][0] + 1000.0 and gt[1] == gt[0]


def test_a_truncated_file_among_matching_ones_is_named(fixtures_root, tmp_path):
    src = fixtures_root / "edge-cases/tiff/bigtiff.tif"
    folder = tmp_path / "archive"
    folder.mkdir()
    for name in ("a.tif", "b.tif"):
        shutil.copy(src, folder / name)
    size = src.stat().st_size
    with open(folder / "b.tif", "r+b") as f:
        f.truncate(size - 100)
    with pytest.raises(TiffHeaderError, match=r"b.tif: truncated - IFD 0 tile \d+ ends at byte"):
        read_headers(LocalStore(str(folder)), ["a.tif", "b.tif"], [size, size - 100], [0, 1], DEFAULTS)


def test_a_template_from_a_later_file_serves_earlier_ones(fixtures_root, tmp_path):
    """Concurrent remote reads finish in any order: a file may match a
    template made from a file later in the batch."""
    from chunkindex.formats.tiff.headers import _levels_of, _read_local
    from chunkindex.formats.tiff.ifd import HeaderTemplates

    folder = tmp_path / "archive"
    folder.mkdir()
    shutil.copy(fixtures_root / "edge-cases/tiff/bigtiff.tif", folder / "a.tif")
    shutil.copy(fixtures_root / "edge-cases/tiff/bigtiff.tif", folder / "b.tif")
    names = ["a.tif", "b.tif"]
    sizes = [(folder / n).stat().st_size for n in names]
    templates = HeaderTemplates()
    parsed_b = _read_local(str(folder), "b.tif", sizes[1], 1 << 20, templates)
    hit_a = _read_local(str(folder), "a.tif", sizes[0], 1 << 20, templates)
    assert parsed_b.template == 0 and hit_a.template == 0 and not hasattr(hit_a, "header")
    table = _levels_of([hit_a, parsed_b], names, sizes, [0, 1], templates)
    expected = read_headers(LocalStore(str(folder)), names, sizes, [0, 1], DEFAULTS)
    assert table.equals(expected)
