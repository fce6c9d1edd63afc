"""Parquet files spliced from separately encoded row groups
(chunkindex.indexes.parquet_splice): footers decode and re-encode to the
same bytes, and spliced files read the same in pyarrow, DuckDB and GDAL."""

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chunkindex.indexes import parquet_splice as ps


def _encoded(table: pa.Table, groups: list[tuple[int, int]]) -> ps.ParquetParts:
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema, use_dictionary=["s"], store_schema=False) as writer:
        for start, stop in groups:
            writer.write_table(table.slice(start, stop - start), row_group_size=stop - start)
    return ps.split(sink.getvalue().to_pybytes())


@pytest.fixture
def table() -> pa.Table:
    return pa.table({"a": pa.array(range(1000), pa.int64()), "s": pa.array([f"file-{i // 100}" for i in range(1000)])})


def test_a_footer_round_trips_byte_for_byte(table):
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=300)
    data = sink.getvalue().to_pybytes()
    parts = ps.split(data)  # raises unless decode + encode gives the same bytes
    assert len(parts.row_groups) == 4
    assert ps.assemble([parts], [(0, j) for j in range(4)], None) == data


def test_spliced_buffers_equal_one_writer_and_read_everywhere(table, tmp_path, gdal):
    whole = _encoded(table, [(0, 250), (250, 500), (500, 750), (750, 1000)])
    left, right = _encoded(table, [(0, 250), (250, 500)]), _encoded(table, [(500, 750), (750, 1000)])
    spliced = ps.assemble([left, right], [(0, 0), (0, 1), (1, 0), (1, 1)], {"cri": "{}"})
    assert spliced == ps.assemble([whole], [(0, j) for j in range(4)], {"cri": "{}"})  # the same bytes
    # Row groups listed in another order than their bytes: readers follow the footer.
    path = tmp_path / "reordered.parquet"
    path.write_bytes(ps.assemble([left, right], [(1, 0), (0, 0), (1, 1), (0, 1)], {"k": "v"}))
    expected = pa.concat_tables([table.slice(500, 250), table.slice(0, 250), table.slice(750, 250),
                                 table.slice(250, 250)])
    assert pq.read_table(path).to_pylist() == expected.to_pylist()
    assert pq.ParquetFile(path).metadata.metadata == {b"k": b"v"}
    assert duckdb.sql(f"SELECT count(*), sum(a) FROM '{path}' WHERE s = 'file-7'").fetchall() == [(100, 74950)]
    dataset = gdal.OpenEx(str(path), gdal.OF_VECTOR)
    assert dataset.GetLayer(0).GetFeatureCount() == 1000


def test_not_parquet_is_named(tmp_path):
    with pytest.raises(ps.SpliceError, match="x.bin is not a Parquet file"):
        ps.split(b"PAR1 nothing", "x.bin")
