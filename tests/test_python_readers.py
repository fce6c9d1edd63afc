"""Issue 17 §1: the Pangeo stack reads our Kerchunk Parquet with its own
defaults. fsspec's ReferenceFileSystem with both Parquet engines
(fastparquet, its default, and pyarrow) and `xr.open_dataset(...,
engine="zarr")` as kerchunk's documentation shows, on every demo index and
every edge-case TIFF index; values compared with GDAL's reads of the sources."""

from __future__ import annotations

import json
import numbers
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from client_support import (
    DEMO_SOURCES,
    EDGE_TIFFS,
    array_names,
    cf_decoded,
    data_arrays,
    metadata,
    parquet_reference,
    sample_chunk_keys,
    source_chunk_values,
)

ENGINES = ("fastparquet", "pyarrow")


def kerchunk_reference_schema(tmp_path: Path) -> list[tuple[str, str, str, int]]:
    """(name, physical type, logical type, max definition level) of each column
    of a record file written by kerchunk's own writer (`refs_to_dataframe`)."""
    import kerchunk.df

    refs = {
        ".zgroup": json.dumps({"zarr_format": 2}),
        "a/.zarray": json.dumps({"zarr_format": 2, "shape": [4, 4], "chunks": [2, 2], "dtype": "<i2",
                                 "compressor": None, "filters": None, "fill_value": 0, "order": "C"}),
        "a/.zattrs": json.dumps({"_ARRAY_DIMENSIONS": ["y", "x"]}),
        "a/0.0": ["/x/f.bin", 0, 8], "a/0.1": ["/x/f.bin", 8, 8], "a/1.0": "base64:AAAAAAAAAAA=",
    }
    kerchunk.df.refs_to_dataframe({"version": 1, "refs": refs}, str(tmp_path / "k.parq"), record_size=4)
    return parquet_columns(tmp_path / "k.parq" / "a" / "refs.0.parq")


def parquet_columns(path: Path) -> list[tuple[str, str, str, int]]:
    schema = pq.ParquetFile(path).schema
    return [(c.name, c.physical_type, str(c.logical_type), c.max_definition_level)
            for c in (schema.column(i) for i in range(len(schema)))]


def all_indexes(demo_indexes, edge_indexes) -> dict[str, Path]:
    return {**demo_indexes, **{f"edge:{k}": v for k, v in edge_indexes.items()}}


def test_record_files_are_written_as_kerchunk_writes_them(demo_indexes, edge_indexes, tmp_path):
    expected = kerchunk_reference_schema(tmp_path)
    assert [c[0] for c in expected] == ["path", "offset", "size", "raw"]
    for label, index in all_indexes(demo_indexes, edge_indexes).items():
        doc = json.loads((index / ".zmetadata").read_text())
        assert set(doc) == {"metadata", "record_size"}, label
        assert isinstance(doc["record_size"], int) and doc["record_size"] > 0
        for name in array_names(index):
            files = sorted(p.name for p in (index / name).glob("*.parq"))
            assert files and all(f.startswith("refs.") and f[5:-5].isdigit() for f in files), (label, name)
            for part in (index / name).glob("refs.*.parq"):
                assert parquet_columns(part) == expected, f"{label}: {part} differs from kerchunk's columns"


@pytest.mark.parametrize("engine", ENGINES)
def test_reference_filesystem_reads_every_sampled_reference(engine, demo_indexes, edge_indexes):
    import fsspec
    from fsspec.implementations.reference import LazyReferenceMapper, ReferenceFileSystem

    for label, index in all_indexes(demo_indexes, edge_indexes).items():
        refs = LazyReferenceMapper(str(index), fs=fsspec.filesystem("file"), engine=engine)
        fs = ReferenceFileSystem(refs, remote_protocol="file")
        meta = metadata(index)
        for name in array_names(index):
            zarray = meta[f"{name}/.zarray"]
            for key in sample_chunk_keys(zarray, 12, seed=len(name)):
                chunk = f"{name}/{'.'.join(map(str, key)) or '0'}"
                path, offset, size, raw = parquet_reference(index, name, key)
                if path is None:
                    if raw is not None:
                        assert fs.cat(chunk) == raw, (label, chunk)
                    continue
                got = refs[chunk]
                assert got[0] == path and isinstance(got[1], numbers.Integral) and isinstance(got[2], numbers.Integral), (
                    f"{label} {chunk}: {engine} reads the reference as {got!r}")
                assert (int(got[1]), int(got[2])) == (offset, size)
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    assert fs.cat(chunk) == handle.read(size), (label, chunk)


def open_as_documented(index: Path):
    """`xr.open_dataset` exactly as kerchunk's documentation (and the README) show."""
    import imagecodecs.numcodecs
    import xarray as xr

    imagecodecs.numcodecs.register_codecs(verbose=False)
    return xr.open_dataset("reference://", engine="zarr", backend_kwargs={
        "consolidated": False, "storage_options": {"fo": str(index), "remote_protocol": "file"}})


@pytest.mark.parametrize("dataset", sorted(DEMO_SOURCES))
def test_xarray_reads_demo_chunks_equal_to_the_sources(dataset, demo_indexes, fixtures_root, gdal):
    index = demo_indexes[dataset]
    ds = open_as_documented(index)
    meta = metadata(index)
    checked = 0
    for name in data_arrays(index):
        if "/" in name:
            continue  # arrays in sub-groups (levels): tests/test_readme_python.py reads one through DataTree
        variable = name
        zarray = meta[f"{name}/.zarray"]
        for key in sample_chunk_keys(zarray, 3, seed=7):
            raw, scale, offset, nodata = source_chunk_values(gdal, fixtures_root, dataset, name, zarray, key)
            window = tuple(slice(k * c, k * c + n) for k, c, n in zip(key, zarray["chunks"], raw.shape))
            got = ds[variable][window].values
            np.testing.assert_array_equal(got, cf_decoded(raw, scale, offset, nodata),
                                          err_msg=f"{dataset} {name} chunk {key}")
            checked += 1
    assert checked >= 3


@pytest.mark.parametrize("name", EDGE_TIFFS)
def test_xarray_reads_edge_case_tiffs_equal_to_gdal(name, edge_indexes, fixtures_root, gdal):
    ds = open_as_documented(edge_indexes[name])
    source = gdal.Open(str(fixtures_root / "edge-cases" / "tiff" / name))
    raw = source.ReadAsArray()  # (band, y, x) or (y, x)
    band = source.GetRasterBand(1)
    expected = cf_decoded(raw, band.GetScale(), band.GetOffset(), band.GetNoDataValue())
    got = ds["data"].values[0]
    dims = ds["data"].dims[1:]
    if dims[-1] == "band":
        got = np.moveaxis(got, -1, 0)
    np.testing.assert_array_equal(got, expected)
