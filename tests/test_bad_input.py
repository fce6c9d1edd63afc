"""Rows of the README's bad-input table not covered elsewhere: a truncated
or foreign NetCDF file, an object the server refuses (403), a local file or
folder without read permission. Each error names the file and the problem,
and no index is written (or the previous one is kept)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from conftest import REPO
from test_faults import DAY, _list_and_read

from chunkindex.flat import open_index
from chunkindex.formats.hdf.headers import HdfLayoutError
from chunkindex.formats.tiff.headers import TiffHeaderError
from chunkindex.pipeline import quick_recipe, run_recipe
from chunkindex.tables import read_parquet
from chunkindex.testing.servers import HttpServer

MONTHS = ("ocean_temp_2023_01.nc", "ocean_temp_2023_02.nc")


def _bran(folder: Path):
    return quick_recipe("bran", str(folder), fmt="netcdf4", pattern="ocean_temp_{time:%Y}_{time:%m}.nc",
                        variables=("temp",), concat_dim="Time", concat_from="variable",
                        units="days since 1979-01-01 00:00:00", sample_chunks=10)


@pytest.mark.parametrize(("damage", "problem"), [
    (lambda data: data[: len(data) // 3], r"not a readable NetCDF4/HDF5 file \(.*truncated file"),
    (lambda data: b"<html>Not Found</html>", r"not a readable NetCDF4/HDF5 file \(.*file signature not found"),
])
def test_a_damaged_netcdf_file_is_named(tmp_path, fixtures_root, damage, problem):
    for name in MONTHS:
        shutil.copy(fixtures_root / "bran" / name, tmp_path / name)
    bad = tmp_path / MONTHS[1]
    bad.write_bytes(damage(bad.read_bytes()))
    with pytest.raises(HdfLayoutError, match=rf"{bad}: {problem}"):
        run_recipe(_bran(tmp_path), "/", tmp_path / "out")
    assert not (tmp_path / "out" / "bran.parq").exists()


def test_an_object_the_server_refuses_is_named(tmp_path, fixtures_root):
    archive = Path(shutil.copytree(fixtures_root / "ghrsst-deflate-pred1", tmp_path / "archive"))
    with HttpServer(archive) as http:
        http.faults[DAY] = ["forbidden"] * 10
        with pytest.raises(TiffHeaderError, match=rf"{DAY}: cannot read the TIFF header: .*(403|Forbidden)"):
            _list_and_read(http)
        assert http.gets[DAY] == 1  # refused access is not retried


def test_a_netcdf_object_replaced_after_the_listing_is_refused(tmp_path, fixtures_root):
    from chunkindex.formats.hdf.headers import read_batch
    from chunkindex.pipeline import store_spec
    from chunkindex.sources.listing import list_sources

    for name in MONTHS:
        shutil.copy(fixtures_root / "bran" / name, tmp_path / name)
    with HttpServer(tmp_path) as http:
        recipe = quick_recipe("bran", http.url + "/", fmt="netcdf4", pattern="ocean_temp_{time:%Y}_{time:%m}.nc",
                              variables=("temp",), concat_dim="Time", concat_from="variable",
                              source={"template": {"start": "2023-01-01", "end": "2023-02-01", "step": "month"}})
        spec = store_spec(recipe, tmp_path)
        manifest = list_sources(recipe, spec)
        assert len(read_batch(recipe, spec, manifest)) == 2
        data = bytearray((tmp_path / MONTHS[1]).read_bytes())  # same size, other bytes
        data[-1] ^= 0xFF
        (tmp_path / MONTHS[1]).write_bytes(data)
        with pytest.raises(HdfLayoutError, match=rf"{MONTHS[1]}: the object changed since it was listed"):
            read_batch(recipe, spec, manifest)


# --- permission denied ------------------------------------------------------------------------
# The tests run as root, which reads every file: the indexing runs with the
# capabilities that bypass file permissions (CAP_DAC_OVERRIDE,
# CAP_DAC_READ_SEARCH) dropped from its bounding set (setpriv), so a file or
# folder owned by another user with mode 0600/0700 is refused to it as to
# any user.
UNPRIVILEGED = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
_INDEX = """
import sys, yaml
from chunkindex.pipeline import run_recipe
from chunkindex.recipe import recipe_from_dict
run_recipe(recipe_from_dict(yaml.safe_load(open(sys.argv[1]))), "/", sys.argv[2], validate=False)
"""


def _index_tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0, reason="needs root and setpriv")
@pytest.mark.parametrize(("locked", "mode", "problem"), [
    (DAY, 0o600, r"{path}: cannot read the TIFF header: Permission denied"),
    (DAY.rsplit("/", 1)[0], 0o700, r"{path}.*Permission denied"),
])
def test_a_file_or_folder_without_read_permission_is_named(tmp_path, fixtures_root, locked, mode, problem):
    archive = Path(shutil.copytree(fixtures_root / "ghrsst-deflate-pred1", tmp_path / "archive",
                                   ignore=shutil.ignore_patterns("MANIFEST*")))
    doc = yaml.safe_load((REPO / "recipes/ghrsst-demo-deflate.yaml").read_text())
    doc["source"] = {"url": str(archive), "pattern": doc["source"]["pattern"]}
    doc["output"]["kinds"] = ["kerchunk-parquet", "cri-parquet"]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    command = [sys.executable, "-c", _INDEX, str(recipe), str(out)]
    subprocess.run(UNPRIVILEGED + command, check=True, capture_output=True)  # every file readable: indexed
    before = _index_tree(out)
    os.chown(archive / locked, 65534, 65534)  # nobody's, and only nobody may read it
    os.chmod(archive / locked, mode)
    failed = subprocess.run(UNPRIVILEGED + command, capture_output=True, text=True, check=False)
    assert failed.returncode != 0
    message = failed.stderr.strip().splitlines()[-1]
    assert re.search(problem.format(path=re.escape(locked)), message), failed.stderr[-3000:]
    assert _index_tree(out) == before


# --- a chunk larger than 2 GiB --------------------------------------------------------------


BIG_SIDE = 33792  # one uint16 chunk of BIG_SIDE**2 samples: 2.28 GB


def _big_tile_tiff(path: Path, gdal) -> tuple[int, int]:
    """A BigTIFF of one uncompressed uint16 tile (TileByteCounts a LONG8),
    written sparse: only its header and last sample take disk space.
    Returns the tile's (offset, byte count) as GDAL's TIFF driver reads them."""
    size, data_offset = BIG_SIDE * BIG_SIDE * 2, 4096
    tags = [(256, 4, 1, BIG_SIDE), (257, 4, 1, BIG_SIDE), (258, 3, 1, 16), (259, 3, 1, 1), (262, 3, 1, 1),
            (277, 3, 1, 1), (284, 3, 1, 1), (322, 4, 1, BIG_SIDE), (323, 4, 1, BIG_SIDE),
            (324, 16, 1, data_offset), (325, 16, 1, size),
            (339, 3, 1, 1)]  # (tag, type: 3 SHORT / 4 LONG / 16 LONG8, count, value)
    header = b"II" + struct.pack("<HHHQ", 43, 8, 0, 16)
    ifd = struct.pack("<Q", len(tags)) + b"".join(struct.pack("<HHQQ", *t) for t in tags) + struct.pack("<Q", 0)
    with open(path, "wb") as handle:
        handle.write(header + ifd)
        handle.seek(data_offset + size - 2)
        handle.write(struct.pack("<H", 7))
    source = gdal.Open(str(path))
    band = source.GetRasterBand(1)
    return int(band.GetMetadataItem("BLOCK_OFFSET_0_0", "TIFF")), int(band.GetMetadataItem("BLOCK_SIZE_0_0", "TIFF"))


def _big_chunk_hdf5(path: Path, gdal) -> tuple[int, int]:
    """An HDF5 file (as NetCDF4 files are) with one uncompressed uint16
    chunk, allocated at creation and never written (sparse). Returns its
    (offset, size) as HDF5 reads them."""
    import h5py
    from h5py import h5d, h5p, h5s, h5t

    with h5py.File(path, "w") as handle:
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_chunk((1, BIG_SIDE, BIG_SIDE))
        dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5d.FILL_TIME_NEVER)
        h5d.create(handle.id, b"data", h5t.STD_U16LE, h5s.create_simple((1, BIG_SIDE, BIG_SIDE)), dcpl=dcpl)
        chunk = handle["data"].id.get_chunk_info(0)
    return chunk.byte_offset, chunk.size


@pytest.mark.parametrize(("name", "fmt", "make"), [("big.tif", "cog", _big_tile_tiff),
                                                   ("big.h5", "hdf5", _big_chunk_hdf5)])
def test_a_chunk_larger_than_2_gib_is_indexed_exactly(tmp_path, gdal, name, fmt, make):
    """The index holds the chunk's exact int64 size, as GDAL's TIFF driver
    (or HDF5) reports it. GDAL's readers of the index cannot take it: the
    Kerchunk Parquet reader truncates the size to 2**31 - 1 (with a
    warning), the CRI driver refuses the array; the index's notes say so."""
    offset, size = make(tmp_path / name, gdal)
    assert size > 2**31 and (tmp_path / name).stat().st_blocks * 512 < 2**20  # sparse
    recipe = quick_recipe("big", str(tmp_path), fmt=fmt, glob=name, kinds=("kerchunk-parquet", "cri-parquet"))
    result = run_recipe(recipe, "/", tmp_path / "out", validate=False)
    refs = read_parquet(Path(result.outputs["kerchunk_parquet"]) / "data/refs.0.parq")
    assert refs.schema.field("size").type == pa.int64() and refs.schema.field("offset").type == pa.int64()
    assert refs.select(["offset", "size"]).to_pylist() == [{"offset": offset, "size": size}]
    cri = open_index(result.outputs["cri_parquet"]).rows("data", 0)
    assert cri.select(["offset", "length"]).to_pylist() == [{"offset": offset, "length": size}]
    assert any("data: 1 chunks larger than 2 GiB" in note for note in result.summary.notes)
    # GDAL's readers of the index, as the note says.
    zarr = gdal.OpenEx(f'ZARR:"{result.outputs["kerchunk_parquet"]}"', gdal.OF_MULTIDIM_RASTER)
    array = zarr.GetRootGroup().OpenMDArray("data")
    with gdal.quiet_errors():
        assert array.GetRawBlockInfo([0] * array.GetDimensionCount()).GetSize() == 2**31 - 1
    with pytest.raises(RuntimeError, match="chunks larger than 2 GB are not supported"):
        gdal.OpenEx(f'CRI:"{result.outputs["cri_parquet"]}"', gdal.OF_MULTIDIM_RASTER)
