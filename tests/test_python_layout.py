"""Issue 17 §3: what a Python user and a GDAL user see when they open the
GHRSST demo index (ZSTD + predictor 2, as the real archive).

Measured with gdalinfo/gdalmdiminfo, `xr.open_dataset` and
`xr.open_datatree` before and after overviews and references-only arrays
moved out of the root into sub-groups (`ovr<f>/`, `refs_only/`). BEFORE is
what the flat layout gave (measured on chunkindex before the change, same
demo); the test measures the current index and asserts AFTER.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import imagecodecs.numcodecs
import numpy as np
import pytest

BIN = Path(sys.executable).parent
LEVELS = (2, 4, 8, 16, 32)

# The flat layout (every array at the root, `<var>_ovr<f>`, `<var>_refs_only`).
BEFORE = {
    "xr.open_dataset data_vars": 24,
    "xr.open_dataset dims": 13,
    "xr.open_datatree groups": ["/"],
    "gdalinfo subdatasets": 12,       # GDAL opens the 12 `_refs_only` arrays, not the ZSTD + predictor ones
    "gdalmdiminfo root arrays": 25,
    "gdalmdiminfo groups": [],
}
AFTER = {
    "xr.open_dataset data_vars": 2,   # analysed_sst, mask
    "xr.open_dataset dims": 3,        # time, lat, lon
    "xr.open_datatree groups": sorted(["/", "/refs_only"] + [f"/ovr{f}" for f in LEVELS]
                                      + [f"/ovr{f}/refs_only" for f in LEVELS]),
    "gdalinfo subdatasets": 12,       # GDAL still lists every level it opens (now by its group path)
    "gdalmdiminfo root arrays": 3,    # time, lat, lon (GDAL cannot open ZSTD + predictor analysed_sst, mask)
    "gdalmdiminfo groups": sorted(["refs_only"] + [f"ovr{f}" for f in LEVELS]),
}


def listing(index: Path) -> dict[str, Any]:
    """What each client lists on opening `index`."""
    import xarray as xr

    imagecodecs.numcodecs.register_codecs(verbose=False)
    kwargs = {"consolidated": False, "storage_options": {"fo": str(index), "remote_protocol": "file"}}
    ds = xr.open_dataset("reference://", engine="zarr", backend_kwargs=kwargs)
    # Sub-groups are listed from the consolidated metadata: fsspec's
    # LazyReferenceMapper lists one level only (consolidated=False finds the
    # ovr<f> groups, empty, and no ovr<f>/refs_only).
    tree = xr.open_datatree("reference://", engine="zarr", **{**kwargs, "consolidated": True})
    # GDAL names the arrays it cannot open on stderr (and exits 0).
    info = subprocess.run([str(BIN / "gdalinfo"), f'ZARR:"{index}"'], capture_output=True, text=True, check=True)
    md = json.loads(subprocess.run([str(BIN / "gdalmdiminfo"), f'ZARR:"{index}"'], capture_output=True,
                                   text=True, check=True).stdout)
    return {
        "xr.open_dataset data_vars": len(ds.data_vars),
        "xr.open_dataset dims": len(ds.sizes),
        "xr.open_datatree groups": sorted(tree.groups),
        "gdalinfo subdatasets": info.stdout.count("_NAME="),
        "gdalmdiminfo root arrays": len(md.get("arrays", {})),
        "gdalmdiminfo groups": sorted(md.get("groups", {})),
    }


def test_overviews_and_refs_only_arrays_are_out_of_the_root(demo_indexes):
    if not (BIN / "gdalinfo").exists():
        pytest.skip("GDAL's command-line tools are not installed")
    got = listing(demo_indexes["ghrsst-demo"])
    assert got == AFTER
    assert got["xr.open_dataset data_vars"] < BEFORE["xr.open_dataset data_vars"]


def test_gdal_keeps_every_level(demo_indexes, gdal):
    index = demo_indexes["ghrsst-demo-deflate"]
    root = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup()
    widths = [root.OpenMDArray("analysed_sst").GetDimensions()[2].GetSize()]
    for factor in LEVELS:
        arr = root.OpenMDArrayFromFullname(f"/ovr{factor}/analysed_sst")
        dims = arr.GetDimensions()
        assert [d.GetType() for d in dims] == ["TEMPORAL", "HORIZONTAL_Y", "HORIZONTAL_X"]
        np.testing.assert_array_equal(dims[0].GetIndexingVariable().ReadAsArray(),
                                      root.OpenMDArray("time").ReadAsArray())
        widths.append(dims[2].GetSize())
        classic = gdal.Open(f'ZARR:"{index}":/ovr{factor}/analysed_sst:0')
        assert classic.GetSpatialRef().GetAuthorityCode(None) == "4326"
        assert classic.GetGeoTransform()[1] == pytest.approx(360 / classic.RasterXSize)
    assert widths == [1800, 900, 450, 225, 112, 56]  # GDAL's COG overview sizes (rounded down)
