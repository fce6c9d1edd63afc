"""GDAL reads a Kerchunk Parquet folder written here with plain pyarrow
(not with chunkindex's writer): values, missing chunks, inline chunks."""

import json
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def test_gdal_reads_hand_written_kerchunk_parquet(tmp_path, gdal):
    rng = np.random.default_rng(0)
    data = rng.integers(-1000, 1000, size=(6, 10), dtype="<i2")
    chunks = (4, 4)
    grid = (2, 3)
    blob = tmp_path / "chunks.bin"
    refs = []  # (path, offset, size, raw) in C order of the 2 x 3 chunk grid
    with open(blob, "wb") as out:
        for cy in range(grid[0]):
            for cx in range(grid[1]):
                block = np.full(chunks, -1, dtype="<i2")
                part = data[cy * 4:(cy + 1) * 4, cx * 4:(cx + 1) * 4]
                block[: part.shape[0], : part.shape[1]] = part
                payload = zlib.compress(block.tobytes())
                if (cy, cx) == (0, 1):  # inline chunk (raw)
                    refs.append((None, 0, 0, payload))
                    continue
                refs.append((str(blob), out.tell(), len(payload), None))
                out.write(payload)
    refs = refs[:5]  # the last chunk has no row: it reads as the fill value
    index = tmp_path / "index.parq"
    (index / "data").mkdir(parents=True)
    meta = {
        ".zgroup": {"zarr_format": 2},
        "data/.zarray": {"zarr_format": 2, "shape": [6, 10], "chunks": [4, 4], "dtype": "<i2",
                         "compressor": {"id": "zlib", "level": 1}, "filters": None, "fill_value": -7,
                         "order": "C"},
        "data/.zattrs": {"_ARRAY_DIMENSIONS": ["y", "x"]},
    }
    (index / ".zmetadata").write_text(json.dumps({"metadata": meta, "record_size": 10}))
    table = pa.table({
        "path": pa.array([r[0] for r in refs], pa.string()),
        "offset": pa.array([r[1] for r in refs], pa.int64()),
        "size": pa.array([r[2] for r in refs], pa.int64()),
        "raw": pa.array([r[3] for r in refs], pa.binary()),
    })
    pq.write_table(table, index / "data" / "refs.0.parq")

    ds = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER)
    arr = ds.GetRootGroup().OpenMDArray("data")
    got = arr.ReadAsArray()
    expected = data.copy()
    expected[4:, 8:] = -7  # chunk (1, 2) has no row past the end of refs.0.parq
    np.testing.assert_array_equal(got, expected)
    info = arr.GetRawBlockInfo([1, 0])
    assert info.GetFilename() == str(blob) and info.GetSize() == refs[3][2] and info.GetOffset() == refs[3][1]
