"""Fast unit tests: file-name patterns, CF time units, the TIFF and HDF5
codec chains, the recipe's schema defaults, the two TIFF readers'
cross-check and the retry of a transient error."""

import dataclasses
import datetime as dt

import numpy as np
import pytest

from chunkindex.codecs import UnsupportedCodec
from chunkindex.formats.hdf.chain import H5Z_BLOSC, H5Z_DEFLATE, H5Z_FLETCHER32, H5Z_SHUFFLE, H5Z_SZIP, hdf5_chain
from chunkindex.formats.tiff.chain import tiff_chain
from chunkindex.formats.tiff.headers import (
    ReadSettings,
    TiffHeaderError,
    cross_check_first,
    is_transient,
    read_headers,
)
from chunkindex.model import parse_cf_units, times_to_cf
from chunkindex.recipe import default_headers, load_schema, recipe_from_dict
from chunkindex.sources.listing import ListingError, NamePattern

# --- NamePattern -------------------------------------------------------------


def test_name_pattern_parses_time_and_variable():
    pattern = NamePattern.compile("{time:%Y}/{time:%Y%m%d}_{variable}.tif")
    match = pattern.regex.match("2024/20240131_sst.tif")
    assert match["variable"] == "sst"
    assert pattern.parse_time(match, "x") == dt.datetime(2024, 1, 31)
    assert pattern.regex.match("2024/20240131_sst.tif.aux") is None
    assert pattern.fill(dt.datetime(2020, 2, 29), "mask") == "2020/20200229_mask.tif"


def test_name_pattern_day_of_year_and_disagreeing_fields():
    pattern = NamePattern.compile("{time:%Y}/{time:%Y%j}.nc")
    assert pattern.parse_time(pattern.regex.match("2021/2021060.nc"), "x") == dt.datetime(2021, 3, 1)
    with pytest.raises(ListingError, match="the time fields disagree"):
        pattern.parse_time(pattern.regex.match("2020/2021060.nc"), "2020/2021060.nc")
    with pytest.raises(ListingError, match="cannot parse '20210230'"):
        other = NamePattern.compile("{time:%Y%m%d}.tif")
        other.parse_time(other.regex.match("20210230.tif"), "20210230.tif")


def test_name_pattern_refuses_what_it_cannot_parse():
    with pytest.raises(ValueError, match="needs a strftime format"):
        NamePattern.compile("{time}.tif")
    with pytest.raises(ValueError, match="unsupported directive %Q"):
        NamePattern.compile("{time:%Q}.tif")


# --- CF time units -----------------------------------------------------------


def test_cf_units():
    assert parse_cf_units("days since 1970-01-01") == (86400.0, dt.datetime(1970, 1, 1))
    assert parse_cf_units("hours since 1979-01-01 06:30:00") == (3600.0, dt.datetime(1979, 1, 1, 6, 30))
    times = np.array(["1970-01-02", "1970-01-03T12:00"], dtype="datetime64[us]")
    np.testing.assert_array_equal(times_to_cf(times, "days since 1970-01-01"), [1.0, 2.5])
    with pytest.raises(ValueError, match="unsupported CF time units 'fortnights since 2000-01-01'"):
        parse_cf_units("fortnights since 2000-01-01")


# --- tiff_chain --------------------------------------------------------------


def test_tiff_chain_table():
    zstd_pred = tiff_chain(50000, 2, "<i2", (1, 512, 512), x_axis=-1)
    assert zstd_pred.compressor == {"id": "zstd", "level": 1}
    assert zstd_pred.filters == ({"id": "imagecodecs_delta", "shape": [1, 512, 512], "dtype": "<i2",
                                  "axis": -1, "dist": 1},)
    assert not zstd_pred.gdal_decodable and zstd_pred.description == "TIFF ZSTD + horizontal predictor (2)"
    deflate = tiff_chain(8, 1, "<f4", (1, 256, 256), x_axis=-1)
    assert deflate.gdal_decodable and deflate.filters == ()
    assert tiff_chain(34887, 1, "<f4", (1, 8, 8), -1, lerc_parameters=[4, 2]).compressor == {"id": "zstd", "level": 1}
    jpeg = tiff_chain(7, 1, "|u1", (1, 8, 8), -1)
    assert jpeg.compressor["id"] == "imagecodecs_jpeg" and not jpeg.gdal_decodable
    with pytest.raises(UnsupportedCodec, match=r"a.tif: old-style JPEG \(TIFF Compression 6\) tiles cannot be decoded"):
        tiff_chain(6, 1, "|u1", (1, 8, 8), -1, where="a.tif")
    with pytest.raises(UnsupportedCodec, match="a.tif: TIFF compression 12345 tiles cannot be decoded"):
        tiff_chain(12345, 1, "|u1", (1, 8, 8), -1, where="a.tif")
    with pytest.raises(UnsupportedCodec, match="predictor 9"):
        tiff_chain(8, 9, "|u1", (1, 8, 8), -1)


# --- hdf5_chain --------------------------------------------------------------


def test_hdf5_chain():
    chain = hdf5_chain([{"code": H5Z_SHUFFLE, "name": "shuffle", "values": []},
                        {"code": H5Z_DEFLATE, "name": "deflate", "values": [4]}], np.dtype("<f4"), "f.nc")
    assert chain.filters == ({"id": "shuffle", "elementsize": 4},)
    assert chain.compressor == {"id": "zlib", "level": 4} and chain.gdal_decodable
    blosc = hdf5_chain([{"code": H5Z_BLOSC, "name": "blosc", "values": [2, 2, 4, 4000, 7, 2, 1]}],
                       np.dtype("<f4"), "f.nc")
    assert blosc.compressor == {"id": "blosc", "cname": "lz4", "clevel": 7, "shuffle": 2, "blocksize": 0}
    with pytest.raises(UnsupportedCodec, match="f.nc: the HDF5 szip filter"):
        hdf5_chain([{"code": H5Z_SZIP, "name": "szip", "values": []}], np.dtype("<f4"), "f.nc")
    with pytest.raises(UnsupportedCodec, match="f.nc: HDF5 filter fletcher32 after compressor zlib"):
        hdf5_chain([{"code": H5Z_DEFLATE, "name": "deflate", "values": [1]},
                    {"code": H5Z_FLETCHER32, "name": "fletcher32", "values": []}], np.dtype("<f4"), "f.nc")


# --- recipe defaults ---------------------------------------------------------


def test_recipe_defaults_come_from_the_schema():
    schema = load_schema("recipe")
    headers = schema["properties"]["headers"]["properties"]
    recipe = recipe_from_dict({
        "id": "x", "title": "x", "format": "cog", "source": {"url": "/d", "glob": "*.tif"},
        "variables": [{"name": "v"}], "concat": {"dim": "time"}, "output": {"kinds": ["kerchunk-parquet"]},
        "validation": {"sample_chunks": 3}})
    for name, value in dataclasses.asdict(recipe.headers).items():
        assert value == headers[name]["default"], name
    assert recipe.headers == default_headers()
    assert recipe.output.record_size == schema["properties"]["output"]["properties"]["record_size"]["default"]
    assert recipe.validation.second_reader is True and recipe.concat.calendar == "standard"
    assert recipe.source.on_mismatch == "error"


# --- the two TIFF readers, and retries ----------------------------------------


@pytest.fixture(scope="module")
def sparse(fixtures_root):
    from obstore.store import LocalStore

    path = fixtures_root / "edge-cases/tiff/lzw.tif"
    return LocalStore(str(path.parent)), path


def test_the_two_tiff_readers_disagreeing_is_an_error(sparse):
    import pyarrow as pa

    store, path = sparse
    settings = ReadSettings.from_recipe(default_headers())
    table = read_headers(store, [path.name], [path.stat().st_size], [0], settings, reader="numpy")
    assert cross_check_first(store, [path.name], [path.stat().st_size], [0], table, settings, "numpy") is None
    offsets = table["tile_offsets"].to_pylist()
    offsets[0][1] += 8  # as if one reader misread one tile's offset
    wrong = table.set_column(table.schema.get_field_index("tile_offsets"), "tile_offsets",
                             pa.array(offsets, table.schema.field("tile_offsets").type))
    with pytest.raises(TiffHeaderError, match="lzw.tif: the numpy and async-tiff TIFF readers disagree on "
                                              "'tile_offsets'"):
        cross_check_first(store, [path.name], [path.stat().st_size], [0], wrong, settings, "numpy")


def test_retry_decisions_come_from_error_types():
    import obstore.exceptions as oe

    assert is_transient(TimeoutError(), remote=True) and is_transient(ConnectionResetError(), remote=True)
    assert is_transient(oe.GenericError("503"), remote=True)
    assert not is_transient(oe.GenericError("503"), remote=False)  # a local file reads the same again
    assert not is_transient(FileNotFoundError("gone"), remote=True)
    assert not is_transient(oe.PermissionDeniedError("403"), remote=True)
    assert not is_transient(ValueError("not a TIFF"), remote=True)
    assert is_transient(RuntimeError("wrapped store error"), remote=True, opaque=True)


@pytest.mark.network_local
def test_a_transient_server_error_is_retried(sparse):
    from obstore.store import HTTPStore

    from chunkindex.testing.servers import HttpServer

    _, path = sparse
    settings = dataclasses.replace(ReadSettings.from_recipe(default_headers()), retries=3, backoff_seconds=0.01)
    local = read_headers(sparse[0], [path.name], [path.stat().st_size], [0], settings, reader="numpy")
    no_client_retries = {"max_retries": 0, "retry_timeout": dt.timedelta(seconds=1),
                         "backoff": {"init_backoff": dt.timedelta(milliseconds=1),
                                     "max_backoff": dt.timedelta(milliseconds=1), "base": 2}}
    with HttpServer(path.parent) as http:
        store = HTTPStore.from_url(http.url, client_options={"allow_http": True}, retry_config=no_client_retries)
        read_headers(store, [path.name], [path.stat().st_size], [0], settings, reader="numpy")
        requests = http.requests  # what reading this header takes without failures
    with HttpServer(path.parent, fail_first=1) as http:  # the first GET fails with 503
        store = HTTPStore.from_url(http.url, client_options={"allow_http": True}, retry_config=no_client_retries)
        table = read_headers(store, [path.name], [path.stat().st_size], [0], settings, reader="numpy")
        assert http.requests == requests + 1  # failed once, retried once
    assert table.drop_columns(["header_bytes"]).equals(local.drop_columns(["header_bytes"]))
    with HttpServer(path.parent, fail_first=100) as http:
        store = HTTPStore.from_url(http.url, client_options={"allow_http": True}, retry_config=no_client_retries)
        with pytest.raises(TiffHeaderError, match="lzw.tif: cannot read the TIFF header"):
            read_headers(store, [path.name], [path.stat().st_size], [0], settings, reader="numpy")
        assert http.requests == settings.retries  # every attempt of the first request, then the error
