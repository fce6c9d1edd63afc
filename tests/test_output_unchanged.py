"""The demo indexes (ghrsst-demo, ghrsst-demo-deflate, bran-demo) are
byte-identical to those recorded in tests/data/index-digests.json.

A change that alters output on purpose re-records them with one command:
`python tools/index_digests.py` (see its docstring for what is pinned).
"""

import importlib.util
import json

from conftest import REPO

_spec = importlib.util.spec_from_file_location("index_digests", REPO / "tools" / "index_digests.py")
index_digests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(index_digests)


def test_demo_indexes_are_byte_identical_to_the_recorded_ones(fixtures_root, tmp_path):
    recorded = json.loads(index_digests.DIGESTS.read_text())
    found = index_digests.compute(fixtures_root, tmp_path)
    problems = index_digests.differences(recorded, found)
    assert not problems, ("the demo indexes changed (re-record with `python tools/index_digests.py` "
                          "if that is intended):\n  " + "\n  ".join(problems))
