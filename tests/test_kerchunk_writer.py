"""The writers: record layout, fill chunks, atomic replacement, JSON."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from chunkindex.codecs import CodecChain, decode_chunk, encode_chunk
from chunkindex.indexes.flat import write_cri_parquet
from chunkindex.indexes.kerchunk import (
    ChunkReference,
    lookup_reference,
    read_kerchunk_metadata,
    write_kerchunk_json,
    write_kerchunk_parquet,
)
from chunkindex.model import ArraySpec, coordinate_array

ZLIB = CodecChain({"id": "zlib", "level": 1}, (), "zlib")


def _array(tmp_path, n_chunks_y=5, missing=(3,)):
    """A (5*4, 4) int16 array in 4 x 4 chunks stored zlib-compressed in one file."""
    blob = tmp_path / "blob.bin"
    offsets, sizes = [], []
    data = np.arange(n_chunks_y * 16, dtype="<i2").reshape(n_chunks_y * 4, 4)
    with open(blob, "wb") as out:
        for j in range(n_chunks_y):
            payload = encode_chunk(ZLIB, data[j * 4:(j + 1) * 4])
            offsets.append(out.tell())
            sizes.append(len(payload))
            out.write(payload)
    url_index = np.zeros(n_chunks_y, np.int32)
    url_index[list(missing)] = -1
    array = ArraySpec(name="v", dims=("y", "x"), shape=(n_chunks_y * 4, 4), chunks=(4, 4), dtype="<i2",
                      fill_value=-9, chain=ZLIB, attrs={"chunkindex": {}}, urls=[str(blob)],
                      url_index=url_index, offsets=np.array(offsets, np.int64), sizes=np.array(sizes, np.int64))
    array.fill_missing()
    expected = data.copy()
    for j in missing:
        expected[j * 4:(j + 1) * 4] = -9
    return array, expected


def test_records_split_by_record_size_and_gdal_reads_them(tmp_path, gdal):
    array, expected = _array(tmp_path)
    y = coordinate_array("y", np.arange(20.0), {"axis": "Y"})
    index = write_kerchunk_parquet([array, y], tmp_path / "idx.parq", record_size=2, root_attrs={"title": "t"})
    assert sorted(p.name for p in (index / "v").iterdir()) == ["refs.0.parq", "refs.1.parq", "refs.2.parq"]
    doc = json.loads((index / ".zmetadata").read_text())
    assert doc["record_size"] == 2 and isinstance(doc["metadata"]["v/.zarray"], dict)
    part = pq.read_table(index / "v/refs.1.parq")
    assert part.schema.field("path").type == "string" and part.schema.field("raw").type == "binary"
    assert part["path"].to_pylist()[1] is None and part["raw"].to_pylist()[1] is not None  # chunk 3
    arr = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("v")
    np.testing.assert_array_equal(arr.ReadAsArray(), expected)
    assert lookup_reference(index, "v", (3, 0)) == ChunkReference(raw_bytes=len(array.missing_raw))
    assert lookup_reference(index, "v", (1, 0)).offset == array.offsets[1]
    with pytest.raises(IndexError, match="outside the chunk grid 5x1"):
        lookup_reference(index, "v", (5, 0))


def test_each_record_file_holds_only_the_urls_its_rows_use(tmp_path, gdal):
    """Every record file's path dictionary lists the files its own rows
    reference, not the whole archive's (which would grow the index as files x
    references); GDAL still reads every value."""
    import shutil

    array, expected = _array(tmp_path, n_chunks_y=6, missing=(3,))
    # Each chunk in a file of its own: six copies of the blob.
    urls = []
    for j in range(6):
        copy = tmp_path / f"blob-{j}.bin"
        shutil.copyfile(array.urls[0], copy)
        urls.append(str(copy))
    array.urls = urls
    array.url_index = np.where(array.url_index < 0, -1, np.arange(6)).astype(np.int32)
    index = write_kerchunk_parquet([array], tmp_path / "idx.parq", record_size=2)
    for k, want in enumerate([urls[0:2], urls[2:3], urls[4:6]]):  # chunk 3 has no file
        part = pq.read_table(index / f"v/refs.{k}.parq", read_dictionary=["path"])
        paths = part["path"].combine_chunks()
        assert paths.dictionary.to_pylist() == want, k
        assert [p for p in paths.to_pylist() if p is not None] == want, k
    arr = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("v")
    np.testing.assert_array_equal(arr.ReadAsArray(), expected)


def test_a_failed_write_keeps_the_old_index(tmp_path):
    array, _ = _array(tmp_path)
    index = write_kerchunk_parquet([array], tmp_path / "idx.parq", record_size=10)
    before = (index / ".zmetadata").read_text()
    broken, _ = _array(tmp_path)
    broken.url_index = broken.url_index[:2]  # too short: the writer fails half way
    broken.name = "w"
    with pytest.raises(ValueError):  # pyarrow.ArrowInvalid: columns of different lengths
        write_kerchunk_parquet([array, broken], tmp_path / "idx.parq", record_size=1)
    assert (index / ".zmetadata").read_text() == before
    assert not (index / "w").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".idx")] == []


def test_json_and_cri_outputs(tmp_path, gdal):
    array, expected = _array(tmp_path)
    path = write_kerchunk_json([array], tmp_path / "idx.json")
    refs = json.loads(path.read_text())["refs"]
    assert "v/3.0" not in refs and refs["v/1.0"][1:] == [int(array.offsets[1]), int(array.sizes[1])]
    arr = gdal.OpenEx(f'ZARR:"{path}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("v")
    np.testing.assert_array_equal(arr.ReadAsArray(), expected)
    cri = pq.read_table(write_cri_parquet([array], tmp_path / "v.cri.parquet"))  # no row for chunk 3.0
    assert list(zip(cri["c0"].to_pylist(), cri["c1"].to_pylist())) == [(0, 0), (1, 0), (2, 0), (4, 0)]
    assert read_kerchunk_metadata(path)["metadata"]["v/.zarray"]["fill_value"] == -9


def test_encode_decode_round_trip_with_the_tiff_predictor():
    chain = CodecChain({"id": "zstd", "level": 1},
                       ({"id": "imagecodecs_delta", "shape": [1, 4, 6], "dtype": "<i2", "axis": -1, "dist": 1},))
    block = np.arange(24, dtype="<i2").reshape(1, 4, 6) * 3
    assert not chain.gdal_decodable and chain.python_decodable
    np.testing.assert_array_equal(decode_chunk(chain, encode_chunk(chain, block), "<i2", (1, 4, 6)), block)
    plain = CodecChain({"id": "zstd", "level": 1})
    with pytest.raises(ValueError, match="decodes to 24 bytes, not 48 .a short tile"):
        decode_chunk(plain, encode_chunk(plain, block[:, :2]), "<i2", (1, 4, 6))
