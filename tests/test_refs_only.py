"""Issue 16 §1: no wrong value by construction. An array whose bytes GDAL
cannot decode is written for its references only; reading any pixel of it
fails loudly in GDAL (single- and multi-threaded reads, multidimensional and
classic mode) and in zarr-python, while GetRawBlockInfo still returns the
exact reference."""

from __future__ import annotations

import numpy as np
import pytest
from client_support import cog_files, is_refs_only, metadata

from chunkindex.formats.hdf.chain import hdf5_chain
from chunkindex.formats.tiff.chain import tiff_chain
from chunkindex.indexes.kerchunk import write_kerchunk_parquet
from chunkindex.model import ArraySpec, AssembledIndex

# Every chain chunkindex writes that GDAL cannot decode (a `_refs_only` variant is made for each).
REFS_ONLY_CHAINS = {
    "tiff-lzw": lambda shape: tiff_chain(5, 1, "|u1", shape, -1),
    "tiff-lzw-pred2": lambda shape: tiff_chain(5, 2, "|u1", shape, -1),
    "tiff-packbits": lambda shape: tiff_chain(32773, 1, "|u1", shape, -1),
    "tiff-none-pred2": lambda shape: tiff_chain(1, 2, "|u1", shape, -1),
    "tiff-zstd-pred2": lambda shape: tiff_chain(50000, 2, "|u1", shape, -1),
    "tiff-deflate-pred2": lambda shape: tiff_chain(8, 2, "|u1", shape, -1),
    "tiff-lzma-pred2": lambda shape: tiff_chain(34925, 2, "|u1", shape, -1),
    "tiff-webp": lambda shape: tiff_chain(50001, 1, "|u1", shape, -1),
    "tiff-jpeg": lambda shape: tiff_chain(7, 1, "|u1", shape, -1, jpeg_tables=b"\xff\xd8\xff\xd9"),
    "tiff-jpeg2000": lambda shape: tiff_chain(34712, 1, "|u1", shape, -1),
    "tiff-jpegxl": lambda shape: tiff_chain(50002, 1, "|u1", shape, -1),
    "tiff-lerc": lambda shape: tiff_chain(34887, 1, "|u1", shape, -1, lerc_parameters=[4, 0]),
    "tiff-lerc-deflate": lambda shape: tiff_chain(34887, 1, "|u1", shape, -1, lerc_parameters=[4, 1]),
    "tiff-lerc-zstd": lambda shape: tiff_chain(34887, 1, "|u1", shape, -1, lerc_parameters=[4, 2]),
    "hdf5-lz4": lambda shape: hdf5_chain([{"code": 32004, "name": "lz4", "values": []}], np.dtype("u1"), "t"),
    "hdf5-shuffle-lz4": lambda shape: hdf5_chain([{"code": 2, "name": "shuffle", "values": []},
                                                  {"code": 32004, "name": "lz4", "values": []}],
                                                 np.dtype("u1"), "t"),
    "hdf5-fletcher32": lambda shape: hdf5_chain([{"code": 3, "name": "fletcher32", "values": []}],
                                                np.dtype("u1"), "t"),
}
# Multi-threaded GDAL reads checked for these (a subprocess each): raw tiles as
# long as a chunk (none + predictor) and longer (LZW, ZSTD of noise).
THREADED_CASES = ("tiff-none-pred2", "tiff-lzw", "tiff-zstd-pred2")
SHAPE, CHUNKS = (1, 64, 64), (1, 32, 32)
RAW_BYTES = 32 * 32


def refs_only_index(tmp_path, label: str):
    """An index of one 1 x 64 x 64 uint8 array of 4 chunks under `label`'s
    chain, with tiles of random bytes shorter than, as long as and longer than
    a decoded chunk (an incompressible tile is the case a raw read would pass),
    and one chunk with no data."""
    rng = np.random.default_rng(1)
    blob = tmp_path / "tiles.bin"
    # imagecodecs cannot encode a one-sample WebP fill chunk for the true array: no chunk without data there.
    missing = label != "tiff-webp"
    sizes = np.array([RAW_BYTES // 3, RAW_BYTES, RAW_BYTES + 301, 0 if missing else 77], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    blob.write_bytes(rng.integers(0, 256, int(sizes.sum()), dtype=np.uint8).tobytes())
    chain = REFS_ONLY_CHAINS[label](CHUNKS)
    assert not chain.gdal_decodable, f"{label} is decodable by GDAL: not a refs-only case"
    array = ArraySpec(name="data", dims=("time", "y", "x"), shape=SHAPE, chunks=CHUNKS, dtype="|u1",
                      fill_value=0, chain=chain, attrs={"chunkindex": {"source_format": "test"}},
                      urls=[str(blob)], url_index=np.array([0, 0, 0, -1 if missing else 0], np.int32), offsets=offsets,
                      sizes=sizes)
    assembled = AssembledIndex(arrays=[])
    assembled.add_data_array(array, gdal_variant=True)
    variants = [a for a in assembled.arrays if a is not array]
    assert len(variants) == 1
    index = write_kerchunk_parquet(assembled.arrays, tmp_path / "index.parq")
    return index, variants[0].name, blob, offsets, sizes


def gdal_reads_fail(gdal, index, name: str) -> list[str]:
    """Read chunks of a refs-only array every way GDAL reads single-threaded;
    returns the error messages, failing the test if any read succeeds."""
    errors = []
    ds = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER)
    arr = ds.GetRootGroup().OpenMDArrayFromFullname("/" + name)
    for start, count in (([0, 0, 0], [1, 32, 32]), ([0, 0, 32], [1, 32, 32]), ([0, 32, 0], [1, 32, 32]),
                         ([0, 0, 0], [1, 64, 64])):
        with pytest.raises(RuntimeError) as err:
            arr.ReadAsArray(array_start_idx=start, count=count)
        errors.append(str(err.value))
    classic = gdal.Open(f'ZARR:"{index}":/{name}:0')
    with pytest.raises(RuntimeError) as err:
        classic.ReadAsArray()
    errors.append(str(err.value))
    return errors


# A multi-threaded read (GDAL_NUM_THREADS: GDAL 3.13 then skips the
# imagecodecs_tiff decompressor and takes raw bytes) in its own process: GDAL
# 3.13.3's ZarrV2Array::IAdviseRead can wait forever once a chunk fails (its
# workers' early exit skips the count it waits on), for any failing chunk,
# references-only or not. What must never happen is values.
THREADED_READ = """
import sys
from osgeo import gdal
gdal.UseExceptions()
gdal.SetConfigOption("GDAL_NUM_THREADS", "2")
arr = gdal.OpenEx(f'ZARR:"{sys.argv[1]}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArrayFromFullname(sys.argv[2])
try:
    arr.ReadAsArray(array_start_idx=[0, 0, 0], count=[1, 64, 64])
except RuntimeError as exc:
    print("ERROR", exc)
else:
    print("VALUES")
"""


def threaded_gdal_read(index, name: str) -> str:
    """"error", "hang" or "values" for a multi-threaded read of all four chunks."""
    import subprocess
    import sys

    try:
        done = subprocess.run([sys.executable, "-c", THREADED_READ, str(index), "/" + name],
                              capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "hang"
    return "values" if "VALUES" in done.stdout else ("error" if "ERROR" in done.stdout else done.stderr[-500:])


def zarr_reads_fail(index, name: str) -> list[str]:
    import fsspec
    import imagecodecs.numcodecs
    import zarr
    from fsspec.implementations.reference import LazyReferenceMapper, ReferenceFileSystem
    from zarr.storage import FsspecStore

    imagecodecs.numcodecs.register_codecs(verbose=False)
    refs = LazyReferenceMapper(str(index), fs=fsspec.filesystem("file"))
    fs = ReferenceFileSystem(refs, remote_protocol="file", asynchronous=True)
    group = zarr.open_group(store=FsspecStore(fs=fs, path="", read_only=True), mode="r", zarr_format=2)
    arr = group[name]
    errors = []
    for window in ((0, slice(0, 32), slice(0, 32)), (0, slice(0, 32), slice(32, 64)),
                   (0, slice(32, 64), slice(0, 32)), slice(None)):
        with pytest.raises(Exception) as err:
            arr[window]
        errors.append(f"{type(err.value).__name__}: {err.value}")
    return errors


@pytest.mark.parametrize("label", sorted(REFS_ONLY_CHAINS))
def test_every_refs_only_chain_fails_in_gdal_and_zarr(label, tmp_path, gdal):
    index, name, blob, offsets, sizes = refs_only_index(tmp_path, label)
    assert is_refs_only(index, name)
    for message in gdal_reads_fail(gdal, index, name):
        assert f"{name}/0." in message, message  # the tile, whose path says refs_only/
    if label in THREADED_CASES:
        assert threaded_gdal_read(index, name) in ("error", "hang")
    for message in zarr_reads_fail(index, name):
        assert message
    arr = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArrayFromFullname("/" + name)
    for k, key in enumerate(([0, 0, 0], [0, 0, 1], [0, 1, 0])):
        info = arr.GetRawBlockInfo(key)
        assert (info.GetFilename(), info.GetOffset(), info.GetSize()) == (str(blob), offsets[k], sizes[k])


def test_demo_refs_only_arrays_fail_and_keep_their_references(demo_indexes, fixtures_root, gdal):
    index = demo_indexes["ghrsst-demo"]  # ZSTD + predictor 2, as the real GHRSST files
    names = [n for n in metadata(index) if n.endswith("/.zarray")]
    refs_only = [n[: -len("/.zarray")] for n in names if is_refs_only(index, n[: -len("/.zarray")])]
    assert len(refs_only) == 12, refs_only  # analysed_sst and mask, each at 6 levels
    for name in refs_only:
        gdal_reads = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup()
        arr = gdal_reads.OpenMDArrayFromFullname("/" + name)
        two_chunks = [1, min(arr.GetBlockSize()[1], arr.GetDimensions()[1].GetSize()),
                      min(2 * arr.GetBlockSize()[2], arr.GetDimensions()[2].GetSize())]
        with pytest.raises(RuntimeError):
            arr.ReadAsArray(array_start_idx=[0, 0, 0], count=two_chunks)
        with pytest.raises(Exception, match="TIFF"):  # imagecodecs' TiffError: not a TIFF file
            zarr_reads_fail_demo(index, name)
    # GetRawBlockInfo of the full-resolution variant is the source's own tile.
    full = next(n for n in refs_only if "analysed_sst" in n and "ovr" not in n)
    arr = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArrayFromFullname("/" + full)
    files = cog_files(fixtures_root, "ghrsst-zstd-pred2", "analysed_sst")
    for t, y, x in ((0, 0, 0), (3, 1, 3), (2, 0, 2)):
        info = arr.GetRawBlockInfo([t, y, x])
        source = gdal.Open(str(files[t]))
        band = source.GetRasterBand(1)
        assert info.GetFilename() == str(files[t].resolve())
        assert info.GetOffset() == int(band.GetMetadataItem(f"BLOCK_OFFSET_{x}_{y}", "TIFF"))
        assert info.GetSize() == int(band.GetMetadataItem(f"BLOCK_SIZE_{x}_{y}", "TIFF"))


def zarr_reads_fail_demo(index, name: str) -> None:
    """Read the first chunk of `name` with zarr-python (raises for a refs-only array)."""
    import fsspec
    import imagecodecs.numcodecs
    import zarr
    from fsspec.implementations.reference import LazyReferenceMapper, ReferenceFileSystem
    from zarr.storage import FsspecStore

    imagecodecs.numcodecs.register_codecs(verbose=False)
    refs = LazyReferenceMapper(str(index), fs=fsspec.filesystem("file"))
    fs = ReferenceFileSystem(refs, remote_protocol="file", asynchronous=True)
    group = zarr.open_group(store=FsspecStore(fs=fs, path="", read_only=True), mode="r", zarr_format=2)
    group[name][0, :16, :16]
