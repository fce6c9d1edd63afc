"""Issue 17 §2: conformance with kerchunk itself. kerchunk's own route
(`SingleHdf5ToZarr` + `MultiZarrToZarr` + `refs_to_dataframe` for NetCDF4,
`kerchunk.tiff.tiff_to_zarr` (tifffile) for COGs) and chunkindex give the same
(path, offset, size) for every chunk key, and decode to the same values.

Differences by design are listed in BY_DESIGN with the reason and asserted,
so the list stays true.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from client_support import bran_files, cog_files, metadata

BY_DESIGN = {
    "codec placement": "kerchunk puts an HDF5 pipeline in `filters` (shuffle, zlib) with compressor null; "
                       "chunkindex puts the last codec in `compressor` as Zarr v2 writers do. Both decode "
                       "identically (checked below); GDAL and zarr-python read either",
    "inlined coordinates": "kerchunk inlines chunks below its inline_threshold (coordinates, small arrays) as "
                           "`raw`; chunkindex always inlines 1-D coordinates and never inlines data chunks, "
                           "so a data chunk is always a (path, offset, size) reference",
    "chunkindex attributes": "chunkindex adds `chunkindex` (codec chain, readers, source) and, where GDAL needs "
                             "them to type a dimension, CF `standard_name`/`axis` on coordinates",

    "time coordinate": "kerchunk concatenates each file's Time values as stored; chunkindex writes the same "
                       "values in the recipe's units (identical here: the recipe names the files' units)",
    "record files": "kerchunk pads the last record file to record_size rows and leaves out record files with "
                    "no reference; chunkindex writes exactly one row per chunk (rows past the last chunk are "
                    "never read) and a record file for every record",
}


def kerchunk_bran(files: list[Path], out: Path) -> dict:
    """kerchunk's references for the BRAN months, as its documentation builds them."""
    from kerchunk.combine import MultiZarrToZarr
    from kerchunk.df import refs_to_dataframe
    from kerchunk.hdf import SingleHdf5ToZarr

    singles = [SingleHdf5ToZarr(str(f)).translate() for f in files]
    combined = MultiZarrToZarr(singles, concat_dims=["Time"],
                               identical_dims=["st_ocean", "yt_ocean", "xt_ocean"]).translate()
    refs_to_dataframe(combined, str(out), record_size=50)
    return combined["refs"]


def ours(index: Path, name: str) -> tuple[list, np.ndarray, np.ndarray]:
    """(paths, offsets, sizes) of every chunk of `name`, in C order, from our record files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted((index / name).glob("refs.*.parq"), key=lambda p: int(p.name.split(".")[1]))
    table = pa.concat_tables([pq.read_table(p) for p in parts])
    return table["path"].to_pylist(), table["offset"].to_numpy(), table["size"].to_numpy()


def test_bran_references_equal_kerchunks(demo_indexes, fixtures_root, tmp_path):
    import fsspec
    from fsspec.implementations.reference import LazyReferenceMapper

    files = bran_files(fixtures_root)
    kc = kerchunk_bran(files, tmp_path / "kerchunk.parq")
    index = demo_indexes["bran-demo"]
    meta = metadata(index)
    zarray = meta["temp/.zarray"]
    grid = [int(np.ceil(s / c)) for s, c in zip(zarray["shape"], zarray["chunks"])]
    paths, offsets, sizes = ours(index, "temp")
    assert len(paths) == int(np.prod(grid))
    # Every chunk key, from kerchunk's in-memory references and from its own Parquet (read by fsspec).
    mapper = LazyReferenceMapper(str(tmp_path / "kerchunk.parq"), fs=fsspec.filesystem("file"), engine="pyarrow")
    differ = []
    for number in range(len(paths)):
        key = "temp/" + ".".join(map(str, np.unravel_index(number, grid)))
        ref = kc[key]
        from_parquet = mapper[key]
        assert [from_parquet[0], int(from_parquet[1]), int(from_parquet[2])] == list(ref)
        if (paths[number], int(offsets[number]), int(sizes[number])) != (ref[0], ref[1], ref[2]):
            differ.append((key, ref, (paths[number], offsets[number], sizes[number])))
    assert not differ, differ[:5]
    # Metadata: shape, chunks, dtype, fill value equal; the codec chain is placed differently (BY_DESIGN).
    kc_zarray = json.loads(kc["temp/.zarray"])
    for field in ("shape", "chunks", "dtype", "fill_value", "order"):
        assert kc_zarray[field] == zarray[field], field
    assert kc_zarray["compressor"] is None and kc_zarray["filters"][-1] == zarray["compressor"]
    assert kc_zarray["filters"][:-1] == zarray["filters"]
    # Every attribute kerchunk copies from the source is there with the same value.
    kc_attrs = json.loads(kc["temp/.zattrs"])
    our_attrs = meta["temp/.zattrs"]
    assert {k: our_attrs.get(k) for k in kc_attrs} == kc_attrs
    assert set(our_attrs) - set(kc_attrs) == {"chunkindex"}
    assert set(BY_DESIGN) >= {"codec placement", "inlined coordinates"}


def test_bran_both_decode_to_the_same_values(demo_indexes, fixtures_root, tmp_path):
    import xarray as xr

    files = bran_files(fixtures_root)
    kerchunk_bran(files, tmp_path / "kerchunk.parq")
    opened = [xr.open_dataset("reference://", engine="zarr", backend_kwargs={
        "consolidated": False, "storage_options": {"fo": str(p), "remote_protocol": "file"}})
        for p in (tmp_path / "kerchunk.parq", demo_indexes["bran-demo"])]
    kc, ci = opened
    for t in (0, 31, 89):
        np.testing.assert_array_equal(kc.temp[t].values, ci.temp[t].values)
    for coord in ("Time", "st_ocean", "yt_ocean", "xt_ocean"):
        np.testing.assert_array_equal(kc[coord].values, ci[coord].values, err_msg=coord)


def test_cog_references_equal_kerchunks_tifffile_route(demo_indexes, fixtures_root):
    """kerchunk.tiff.tiff_to_zarr per file: its level "0" (full resolution) and
    "1".."5" (overviews) hold the same tile references as our arrays at that time step."""
    pytest.importorskip("tifffile")
    from kerchunk.tiff import tiff_to_zarr

    index = demo_indexes["ghrsst-demo-deflate"]
    meta = metadata(index)
    files = cog_files(fixtures_root, "ghrsst-deflate-pred1", "analysed_sst")
    paths, offsets, sizes = ours(index, "analysed_sst")
    zarray = meta["analysed_sst/.zarray"]
    grid = [int(np.ceil(s / c)) for s, c in zip(zarray["shape"], zarray["chunks"])]
    levels = sorted(k for k in meta if k.endswith("analysed_sst/.zarray") and "refs_only" not in k)
    for t, path in enumerate(files):
        refs = tiff_to_zarr(str(path))
        refs = refs.get("refs", refs)
        level0 = json.loads(refs["0/.zarray"]) if "0/.zarray" in refs else json.loads(refs[".zarray"])
        assert level0["chunks"] == zarray["chunks"][1:]
        prefix = "0/" if "0/.zarray" in refs else ""
        for y in range(grid[1]):
            for x in range(grid[2]):
                ref = refs[f"{prefix}{y}.{x}"]
                number = int(np.ravel_multi_index((t, y, x), grid))
                assert (paths[number], int(offsets[number]), int(sizes[number])) == (ref[0], ref[1], ref[2])
    assert len(levels) >= 6
