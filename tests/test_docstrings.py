"""The public API's docstring examples run (those not marked +SKIP, which
need a written demo index), from the repository as the README's commands do."""

import doctest
import importlib

import pytest
from conftest import REPO

MODULES = ["chunkindex", "chunkindex.recipe", "chunkindex.infer", "chunkindex.pipeline", "chunkindex.sources.stores",
           "chunkindex.indexes.kerchunk", "chunkindex.formats.hdf.chain", "chunkindex.formats.hdf.assemble",
           "chunkindex.formats.tiff.headers"]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name, fixtures_root, monkeypatch):
    monkeypatch.chdir(REPO)
    failed, _ = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert failed == 0


def test_every_public_name_is_documented():
    import chunkindex

    for name in chunkindex.__all__:
        if name == "__version__":
            continue
        value = getattr(chunkindex, name)
        assert value.__doc__ and value.__doc__.strip(), name
        if callable(value) and not isinstance(value, type):
            for section in ("Args:", "Returns:", "Example:"):
                assert section in value.__doc__, f"{name}: no {section}"
