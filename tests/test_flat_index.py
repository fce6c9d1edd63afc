"""The CRI flat index (docs/spec/cri-parquet.md): writer, Python reader,
converters, on small TIFF archives written by tifffile and Zarr stores
written by zarr-python. GDAL-based checks live in test_flat_gdal.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chunkindex.codecs import CodecChain
from chunkindex.flat import CriError, open_index, write_cri_parquet
from chunkindex.formats.tiff.chain import tiff_chain
from chunkindex.indexes.convert import cri_to_kerchunk, kerchunk_to_cri, zarr_to_cri
from chunkindex.indexes.kerchunk import write_kerchunk_json, write_kerchunk_parquet
from chunkindex.model import ArraySpec, AssembledIndex

DAYS = 3


def _assemble(root: Path, variables: tuple[str, ...]) -> tuple[AssembledIndex, pa.Table]:
    from chunkindex.formats import extractor_for
    from chunkindex.pipeline import quick_recipe, store_spec
    from chunkindex.sources.listing import list_sources

    recipe = quick_recipe("t", str(root), pattern="{time:%Y%m%d}_{variable}.tif", variables=variables,
                          units="days since 1970-01-01")
    spec = store_spec(recipe, root)
    manifest = list_sources(recipe, spec)
    extractor = extractor_for("cog")
    return extractor.assemble(recipe, manifest, extractor.read_batch(recipe, spec, manifest)), manifest


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict:
    """Three days of tiled TIFFs: int16 ZSTD + predictor 2 with nodata,
    float32 DEFLATE + predictor 3, uint8 RGB chunky LZW + predictor 2."""
    import tifffile

    root = tmp_path_factory.mktemp("tiffs")
    rng = np.random.default_rng(3)
    truth: dict[str, list[np.ndarray]] = {"sst": [], "flt": [], "rgb": []}
    for day in range(1, DAYS + 1):
        sst = rng.integers(-3000, 3000, (300, 700)).astype("<i2")
        flt = rng.random((300, 700)).astype("<f4")
        rgb = rng.integers(0, 255, (300, 700, 3)).astype("u1")
        tifffile.imwrite(root / f"2020010{day}_sst.tif", sst, tile=(128, 128), compression="zstd", predictor=True,
                         extratags=[(42113, "s", 0, "-32768", True)])
        tifffile.imwrite(root / f"2020010{day}_flt.tif", flt, tile=(128, 128), compression="zlib", predictor=3)
        tifffile.imwrite(root / f"2020010{day}_rgb.tif", rgb, tile=(128, 128), compression="lzw", predictor=True,
                         photometric="rgb")
        for name, values in (("sst", sst), ("flt", flt), ("rgb", rgb)):
            truth[name].append(values)
    assembled, manifest = _assemble(root, ("sst", "flt", "rgb"))
    target = root.parent / "index" / "t.cri.parquet"
    write_cri_parquet(assembled, target, files=manifest)
    return {"root": root, "assembled": assembled, "manifest": manifest, "index": target,
            "truth": {k: np.stack(v) for k, v in truth.items()}}


def test_rows_follow_the_spec(archive):
    table = pq.read_table(archive["index"])
    # No inline chunk here, so no `raw` column (§1); per-file facts beside `path` (§2.5).
    assert table.column_names == ["variable", "level", "c0", "c1", "c2", "c3", "path", "offset", "length",
                                  "file_size", "file_etag", "file_last_modified"]
    keys = list(zip(*(table[c].to_pylist() for c in ("variable", "level", "c0", "c1", "c2"))))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)  # §1.3 order, §1.2 one row per chunk
    # Every chunk of the three arrays has a row: 3 days x 3 x 6 tiles (RGB: x 1 band chunk).
    counts = dict(zip(*np.unique(table["variable"].to_numpy(zero_copy_only=False), return_counts=True)))
    assert counts == {"flt": 54, "sst": 54, "rgb": 54}
    assert table["c3"].null_count == 108  # 3-D arrays leave c3 null
    metadata = pq.ParquetFile(archive["index"]).metadata
    stats = metadata.row_group(0).column(2).statistics
    assert stats.has_min_max  # §1.3: statistics on the key columns
    doc = json.loads(metadata.metadata[b"cri"])
    assert doc["cri_version"] == "0.1" and doc["base"] == str(archive["root"]) + "/"
    assert table["path"][0].as_py().endswith("_flt.tif") and not table["path"][0].as_py().startswith("/")
    sst = doc["arrays"]["sst"]
    assert sst["dims"] == ["time", "y", "x"] and sst["dtype"] == "<i2"
    assert sst["levels"][0]["codec"] == [{"name": "zstd", "level": 1},
                                         {"name": "tiff_predictor", "predictor": 2, "samples": 1}]
    assert doc["arrays"]["flt"]["levels"][0]["codec"][1] == {"name": "tiff_predictor", "predictor": 3, "samples": 1}
    rgb = doc["arrays"]["rgb"]
    assert rgb["dims"] == ["time", "y", "x", "band"] and rgb["band_dim"] == "band"
    assert rgb["levels"][0]["codec"] == [{"name": "lzw"}, {"name": "tiff_predictor", "predictor": 2, "samples": 3}]
    assert doc["dimensions"]["time"]["values"] == [18262.0, 18263.0, 18264.0]
    assert doc["dimensions"]["time"]["type"] == "TEMPORAL"
    assert list(metadata.metadata) == [b"cri"]  # nothing per file in the footer
    files = open_index(archive["index"]).files
    assert files["columns"] == ["path", "size", "etag", "last_modified"] and len(files["rows"]) == 9
    sizes = dict(zip(archive["manifest"]["url"].to_pylist(), archive["manifest"]["size"].to_pylist()))
    assert all(row[1] == sizes[str(archive["root"] / row[0])] for row in files["rows"])
    # No _refs_only duplicates: the metadata carries the true chain.
    assert not any(name.endswith("_refs_only") for name in doc["arrays"])


@pytest.mark.parametrize("variable", ["sst", "flt", "rgb"])
def test_read_equals_the_source(archive, variable):
    index = open_index(archive["index"])
    truth = archive["truth"][variable]
    np.testing.assert_array_equal(index.read(variable), truth)
    window = (slice(1, 3), slice(37, 251), slice(5, 199))
    np.testing.assert_array_equal(index.read(variable, window), truth[window])
    np.testing.assert_array_equal(index.read(variable, (2, 299, 0)), truth[2:3, 299:300, 0:1])


def test_refs_and_level0_multiset_equal_kerchunk(archive, tmp_path):
    index = open_index(archive["index"])
    ref = index.refs("sst", (1, 2, 3))
    assert ref["url"] == str(archive["root"] / "20200102_sst.tif") and ref["length"] > 0
    with pytest.raises(CriError, match="outside the chunk grid"):
        index.refs("sst", (3, 0, 0))
    kerchunk = write_kerchunk_parquet(archive["assembled"].arrays, tmp_path / "k.parq", 7)
    for name in ("sst", "flt", "rgb"):
        ours = index.rows(name)
        cri = sorted(zip([index.resolve(p) for p in ours["path"].to_pylist()], ours["offset"].to_pylist(),
                         ours["length"].to_pylist()))
        parts = pa.concat_tables(pq.read_table(p) for p in sorted((kerchunk / name).glob("refs.*.parq")))
        theirs = sorted((p, o, s) for p, o, s in zip(parts["path"].to_pylist(), parts["offset"].to_pylist(),
                                                     parts["size"].to_pylist()) if p is not None)
        assert cri == theirs


def test_fetches_merge_adjacent_ranges(archive, monkeypatch):
    from chunkindex.indexes import flat

    calls = []
    real = flat._fetch_all

    async def spy(plans, options, concurrency):
        calls.append(plans)
        return await real(plans, options, concurrency)

    monkeypatch.setattr(flat, "_fetch_all", spy)
    index = open_index(archive["index"])
    index.read("sst", (slice(0, 1), slice(0, 128), slice(0, 700)))  # one tile row of one file
    (plans,) = calls
    assert len(plans) == 1  # one file
    ranges = plans[0][1]
    assert len(ranges) == 1 and len(ranges[0]) - 2 == 6  # six adjacent tiles, one request


def test_short_edge_chunks_read_as_in_spec(tmp_path):
    """§3.3: a striped TIFF whose last strip holds 2 of 7 rows."""
    import tifffile

    values = np.arange(30 * 11, dtype="<u2").reshape(30, 11)
    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, values, rowsperstrip=7, compression="zlib", predictor=True)
    page = tifffile.TiffFile(path).pages[0]
    offsets, sizes = np.array(page.dataoffsets, np.int64), np.array(page.databytecounts, np.int64)
    chain = tiff_chain(8, 2, "<u2", (7, 11), -1)
    array = ArraySpec(name="v", dims=("y", "x"), shape=(30, 11), chunks=(7, 11), dtype="<u2", fill_value=0,
                      chain=chain, attrs={"chunkindex": {"short_edge_dims": ["y"]}}, urls=[str(path)],
                      url_index=np.zeros(5, np.int32), offsets=offsets, sizes=sizes)
    target = write_cri_parquet([array], tmp_path / "s.cri.parquet")
    index = open_index(target)
    assert index.document["arrays"]["v"]["short_edge_dims"] == ["y"]
    np.testing.assert_array_equal(index.read("v"), values)
    np.testing.assert_array_equal(index.read("v", (slice(27, 30), slice(2, 9))), values[27:30, 2:9])
    # Without short_edge_dims the same chunk is corrupt, and the reader says so.
    array.attrs = {}
    index = open_index(write_cri_parquet([array], tmp_path / "t.cri.parquet"))
    with pytest.raises(CriError, match="not a valid short edge chunk"):
        index.read("v")


def test_missing_chunks_have_no_row_and_read_as_fill(archive, tmp_path):
    sst = next(a for a in archive["assembled"].arrays if a.name == "sst")
    holed = ArraySpec(**{**sst.__dict__, "url_index": sst.url_index.copy(), "attrs": {}})
    holed.url_index[[0, 20]] = -1
    index = open_index(write_cri_parquet([holed], tmp_path / "h.cri.parquet"))
    assert index.refs("sst", (0, 0, 0)) is None and pq.read_table(index.path).num_rows == sst.n_chunks - 2
    values = index.read("sst", (slice(0, 1), slice(0, 128), slice(0, 256)))
    assert (values[0, :, :128] == -32768).all()  # the nodata fill value
    np.testing.assert_array_equal(values[0, :, 128:], archive["truth"]["sst"][0, :128, 128:256])


def test_unknown_codec_and_version_are_refused(archive, tmp_path):
    bad = CodecChain({"id": "mystery"}, (), "a codec nobody knows")
    sst = next(a for a in archive["assembled"].arrays if a.name == "sst")
    target = tmp_path / "x.cri.parquet"
    write_cri_parquet([sst], target)
    before = target.read_bytes()
    with pytest.raises(CriError, match="'mystery'"):
        write_cri_parquet([ArraySpec(**{**sst.__dict__, "chain": bad})], target)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["x.cri.parquet"]
    # A reader refuses a step it does not know, and a major version it does not read.
    table = pq.read_table(target)
    doc = json.loads(pq.ParquetFile(target).metadata.metadata[b"cri"])
    doc["arrays"]["sst"]["levels"][0]["codec"].insert(0, {"name": "rot13"})
    pq.write_table(table.replace_schema_metadata({"cri": json.dumps(doc)}), tmp_path / "y.cri.parquet")
    with pytest.raises(CriError, match="unknown decode step 'rot13'"):
        open_index(tmp_path / "y.cri.parquet").read("sst", (0, slice(0, 10), slice(0, 10)))
    doc["cri_version"] = "1.0"
    pq.write_table(table.replace_schema_metadata({"cri": json.dumps(doc)}), tmp_path / "z.cri.parquet")
    with pytest.raises(CriError, match="version '1.0' is not supported"):
        open_index(tmp_path / "z.cri.parquet")


@pytest.mark.parametrize("kind", ["parquet", "json"])
def test_kerchunk_round_trip(archive, tmp_path, kind):
    arrays = archive["assembled"].arrays
    source = (write_kerchunk_parquet(arrays, tmp_path / "k.parq", 7) if kind == "parquet"
              else write_kerchunk_json(arrays, tmp_path / "k.json"))
    converted = kerchunk_to_cri(source, tmp_path / "k.cri.parquet")
    direct = write_cri_parquet(archive["assembled"], tmp_path / "d.cri.parquet")
    assert pq.read_table(converted).equals(pq.read_table(direct))
    # By design: Kerchunk's .zattrs leave `_FillValue` to the .zarray fill_value (as kerchunk does), so a
    # converted index carries the fill value only; the direct CRI keeps the source's `_FillValue` (nodata).
    def without_fill_attr(doc):
        return {name: {**entry, "attrs": {k: v for k, v in entry["attrs"].items() if k != "_FillValue"}}
                for name, entry in doc["arrays"].items()}

    assert without_fill_attr(open_index(converted).document) == without_fill_attr(open_index(direct).document)
    if kind == "parquet":  # back to Kerchunk Parquet: the very same record files and arrays
        back = cri_to_kerchunk(converted, tmp_path / "back.parq", 7)
        for name in ("sst", "flt", "rgb"):
            for part in sorted((source / name).glob("refs.*.parq")):
                assert pq.read_table(part).equals(pq.read_table(back / name / part.name))
        original = json.loads((source / ".zmetadata").read_text())["metadata"]
        again = json.loads((back / ".zmetadata").read_text())["metadata"]
        for name in ("sst", "flt", "rgb", "time"):
            assert again[f"{name}/.zarray"] == original[f"{name}/.zarray"]
    else:  # back to Kerchunk JSON: the same chunk references
        back = cri_to_kerchunk(converted, tmp_path / "back.json")
        refs = {k: v for k, v in json.loads(source.read_text())["refs"].items()
                if isinstance(v, list) and "refs_only/" not in k}  # variants: CRI has the true chain
        again = {k: v for k, v in json.loads(back.read_text())["refs"].items() if isinstance(v, list)}
        assert again == refs and len(refs) == 162


def _zarr_store(path: Path, fmt: int, shards: tuple[int, ...] | None) -> np.ndarray:
    import zarr

    data = np.random.default_rng(1).integers(-500, 500, (3, 50, 70)).astype("i2")
    group = zarr.open_group(path, mode="w", zarr_format=fmt)
    extra = {"shards": shards} if shards else {}
    names = {"dimension_names": ("time", "lat", "lon")} if fmt == 3 else {}
    array = group.create_array("sst", shape=data.shape, chunks=(1, 20, 20), dtype="i2", fill_value=-1, **names,
                               **extra)
    array[:] = data
    array[0, 0:20, 0:20] = -1  # a chunk of fill values: zarr-python writes no object for it
    if fmt == 2:
        array.attrs["_ARRAY_DIMENSIONS"] = ["time", "lat", "lon"]
    return zarr.open_array(path / "sst")[:]


@pytest.mark.parametrize(("fmt", "shards"), [(2, None), (3, None), (3, (1, 40, 40))])
def test_zarr_store_indexed(tmp_path, fmt, shards):
    store = tmp_path / "store.zarr"
    expected = _zarr_store(store, fmt, shards)
    index = open_index(zarr_to_cri(str(store), tmp_path / "z.cri.parquet"))
    table = index.rows("sst")
    assert table.num_rows == 3 * 3 * 4 - 1  # the fill chunk has no object, hence no row
    if shards:  # inner chunks: rows inside shard objects, at their shard-index offsets
        assert len(set(table["path"].to_pylist())) == 3 * 2 * 2 and table["offset"].to_numpy().max() > 0
    else:
        assert (table["offset"].to_numpy() == 0).all()
    np.testing.assert_array_equal(index.read("sst"), expected)


@pytest.mark.parametrize("inline_threshold", [0, 1_000_000])
def test_third_party_kerchunk_converts(tmp_path, inline_threshold):
    """kerchunk's own HDF5 references of the kerchunk test files -> CRI ->
    pixels equal h5py's; with a high inline threshold every chunk is inline
    (`raw` rows, §1.2)."""
    import h5py
    from conftest import shared_fixture
    from kerchunk.hdf import SingleHdf5ToZarr

    source = shared_fixture("kerchunk-tests", "hdf5_mini_shuffle_zstd.h5")
    refs = SingleHdf5ToZarr(str(source), inline_threshold=inline_threshold).translate()
    (tmp_path / "refs.json").write_text(json.dumps(refs))
    index = open_index(kerchunk_to_cri(tmp_path / "refs.json", tmp_path / "k.cri.parquet"))
    with h5py.File(source) as handle:
        names = [n for n in index.arrays if index.document["arrays"][n]["role"] == "data"]
        assert names
        for name in names:
            np.testing.assert_array_equal(index.read(name), handle[name][...])
    table = pq.read_table(index.path)
    assert ("raw" in table.column_names and table["raw"].null_count == 0) == bool(inline_threshold)


def test_cli_convert_and_info(archive, tmp_path, capsys):
    from chunkindex.cli import main

    kerchunk = write_kerchunk_parquet(archive["assembled"].arrays, tmp_path / "k.parq", 7)
    assert main(["convert", str(kerchunk), str(tmp_path / "k.cri.parquet")]) == 0
    assert main(["info", str(tmp_path / "k.cri.parquet")]) == 0
    out = capsys.readouterr().out
    assert "sst('time', 'y', 'x') <i2" in out and "zstd -> tiff_predictor" in out
    assert main(["refs", str(tmp_path / "k.cri.parquet"), "sst", "1,2,3"]) == 0
    assert capsys.readouterr().out.startswith(str(archive["root"] / "20200102_sst.tif"))
    assert main(["convert", str(tmp_path / "k.cri.parquet"), str(tmp_path / "b.json")]) == 0
    shutil.rmtree(tmp_path / "k.parq")
    assert main(["convert", str(tmp_path / "nothing"), str(tmp_path / "n.cri.parquet")]) == 2


def _with_urls(assembled: AssembledIndex, root: Path, base: str) -> AssembledIndex:
    """The same arrays with their local paths replaced by `base` URLs."""
    arrays = []
    for array in assembled.arrays:
        urls = [base + Path(u).relative_to(root).as_posix() for u in array.urls]
        arrays.append(ArraySpec(**{**array.__dict__, "urls": urls}))
    return AssembledIndex(arrays=arrays)


@pytest.mark.network_local
def test_read_over_http(archive, tmp_path):
    from chunkindex.testing.servers import HttpServer

    with HttpServer(archive["root"]) as server:
        remote = _with_urls(archive["assembled"], archive["root"], server.url + "/")
        index = open_index(write_cri_parquet(remote, tmp_path / "h.cri.parquet"),
                           store_options={"client_options": {"allow_http": True}})
        assert index.base == server.url + "/"
        before = server.requests
        window = (slice(0, 3), slice(0, 128), slice(0, 700))
        np.testing.assert_array_equal(index.read("sst", window), archive["truth"]["sst"][window])
        assert server.requests - before == 3  # one merged range request per file


@pytest.mark.network_local
def test_read_over_s3(archive, tmp_path, monkeypatch):
    import boto3

    from chunkindex.testing.servers import MotoS3Server

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with MotoS3Server() as s3:
        client = boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="cri")
        for path in archive["root"].glob("*_flt.tif"):
            client.upload_file(str(path), "cri", f"archive/{path.name}", ExtraArgs={"ACL": "public-read"})
        remote = _with_urls(AssembledIndex([a for a in archive["assembled"].arrays if a.name.startswith("flt")
                                            or a.name == "time"]), archive["root"], "s3://cri/archive/")
        index = open_index(write_cri_parquet(remote, tmp_path / "s.cri.parquet"), store_options={
            "endpoint": s3.endpoint, "region": "us-east-1", "skip_signature": True})
        assert index.refs("flt", (0, 0, 0))["url"] == "s3://cri/archive/20200101_flt.tif"
        np.testing.assert_array_equal(index.read("flt"), archive["truth"]["flt"])


def test_append_a_time_step_without_rewriting(archive, tmp_path):
    """Day 3 appended to an index of days 1-2 gives the rows and metadata of
    the index written from all three, with the old pages copied as bytes."""
    from chunkindex.formats import extractor_for
    from chunkindex.indexes.append import NotAppendable
    from chunkindex.indexes.flat import append_cri_parquet
    from chunkindex.indexes.parquet_splice import split
    from chunkindex.pipeline import quick_recipe, store_spec
    from chunkindex.sources.listing import list_sources

    root = archive["root"]
    recipe = quick_recipe("t", str(root), pattern="{time:%Y%m%d}_{variable}.tif", variables=("sst", "flt", "rgb"),
                          units="days since 1970-01-01")
    spec = store_spec(recipe, root)
    manifest = list_sources(recipe, spec)
    extractor = extractor_for("cog")
    last_day = np.array([u.startswith(str(root / "20200103")) for u in manifest["url"].to_pylist()])
    head_files, tail_files = manifest.filter(pa.array(~last_day)), manifest.filter(pa.array(last_day))
    head = extractor.assemble(recipe, head_files, extractor.read_batch(recipe, spec, head_files))
    tail = extractor.assemble(recipe, tail_files, extractor.read_batch(recipe, spec, tail_files))
    index = write_cri_parquet(head, tmp_path / "a.cri.parquet", files=head_files)
    old_data = split(index.read_bytes()).data
    with pytest.raises(NotAppendable, match="not all later"):
        append_cri_parquet(index, head, head_files, "time")  # the same days again: refused, nothing changed
    assert split(index.read_bytes()).data == old_data
    counts = append_cri_parquet(index, tail, tail_files, "time")
    assert counts == {"flt": 18, "rgb": 18, "sst": 18}
    assert split(index.read_bytes()).data.startswith(old_data)  # old pages copied, not re-encoded
    appended, full = open_index(index), open_index(archive["index"])
    assert appended.document["arrays"] == full.document["arrays"]
    assert appended.document["dimensions"] == full.document["dimensions"]
    assert appended.files == full.files
    for name in ("sst", "flt", "rgb"):
        assert appended.rows(name).to_pylist() == full.rows(name).to_pylist()
        np.testing.assert_array_equal(appended.read(name), archive["truth"][name])
    keys = list(zip(*(pq.read_table(index)[c].to_pylist() for c in ("variable", "level", "c0", "c1", "c2"))))
    assert keys == sorted(keys)
    import duckdb

    assert duckdb.sql(f"SELECT count(*) FROM '{index}' WHERE c0 = 2").fetchall() == [(54,)]


def test_the_demo_kerchunk_layout_survives_a_round_trip_through_cri(demo_indexes, tmp_path):
    """Overview levels come back as `ovr<f>/<var>` with their coordinates in
    that group, as the workflow writes them (not as root `<var>_ovr<f>`)."""
    source = demo_indexes["ghrsst-demo-deflate"]
    record_size = json.loads((source / ".zmetadata").read_text())["record_size"]
    back = cri_to_kerchunk(kerchunk_to_cri(source, tmp_path / "d.cri.parquet"), tmp_path / "back.parq", record_size)
    original = json.loads((source / ".zmetadata").read_text())["metadata"]
    again = json.loads((back / ".zmetadata").read_text())["metadata"]
    # refs_only/ variants exist for GDAL's sake only: the CRI index carries the true decode chain instead.
    kept = {k for k in original if not k.startswith("refs_only/")}
    overviews = sorted({k.split("/")[0] for k in kept if k.startswith("ovr")})
    assert overviews, "the demo has overview levels: the test needs them"
    assert set(again) == kept
    for key in kept:
        if key.endswith(".zarray"):
            assert again[key] == original[key], key
    for name in [k.removesuffix("/.zarray") for k in kept if k.endswith(".zarray")]:
        for part in sorted((source / name).glob("refs.*.parq")):
            want, got = pq.read_table(part), pq.read_table(back / name / part.name)
            if want["raw"].null_count == want.num_rows:  # references: the very same rows
                assert got.equals(want), (name, part.name)
            else:  # inline coordinates, rebuilt from the geotransform Kerchunk -> CRI derived from them
                np.testing.assert_allclose(np.frombuffer(got["raw"][0].as_py(), "<f8"),
                                           np.frombuffer(want["raw"][0].as_py(), "<f8"), rtol=1e-12, err_msg=name)
