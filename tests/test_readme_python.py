"""Issue 17 §4: the README's "Read it from Python" snippet runs as written on
the demo indexes (in a fresh interpreter, from a folder laid out as the
workflow lays out results/), and gives the source's values."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
from client_support import cf_decoded, cog_files
from conftest import REPO

MARKER = "<!-- tested by tests/test_readme_python.py -->"


def readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    assert MARKER in text, "the README's Python snippet carries the test marker"
    block = re.search(r"```python\n(.*?)```", text[text.index(MARKER):], re.DOTALL)
    assert block is not None
    return block.group(1)


def test_readme_python_snippet_runs_as_written(demo_indexes, fixtures_root, tmp_path, gdal):
    for dataset, index in demo_indexes.items():
        folder = tmp_path / "results" / dataset / "index"
        folder.mkdir(parents=True)
        os.symlink(index, folder / index.name)
    code = readme_snippet()
    probe = ("\nimport json, sys\njson.dump({'vars': sorted(ds.data_vars), 'groups': sorted(tree.groups),"
             " 'sst': sst.values.tolist(), 'coarse': list(coarse.shape),"
             " 'mean': float(mean.mean()), 'chunks': [list(c) for c in lazy['analysed_sst'].chunks]},"
             " open('probe.json', 'w'))\n")
    result = subprocess.run([sys.executable, "-c", code + probe], cwd=tmp_path, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    probe_out = json.loads((tmp_path / "probe.json").read_text())
    assert probe_out["vars"] == ["analysed_sst", "mask"]
    assert "/ovr8" in probe_out["groups"]
    assert probe_out["chunks"][1] == [512, 388] and probe_out["chunks"][0] == [1, 1, 1, 1]
    # The selected window equals GDAL's read of the source, decoded as CF says.
    source = cog_files(fixtures_root, "ghrsst-zstd-pred2", "analysed_sst")[0]
    source_ds = gdal.Open(str(source))
    band = source_ds.GetRasterBand(1)
    expected = cf_decoded(band.ReadAsArray(), band.GetScale(), band.GetOffset(), band.GetNoDataValue())
    got = np.array(probe_out["sst"], dtype=np.float64)
    window = expected[100:300, 800:1200]
    np.testing.assert_allclose(got, window, rtol=1e-6, equal_nan=True)
