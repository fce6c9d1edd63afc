"""Remote faults injected by the local HTTP server, and by a proxy in front
of the local S3 server, while headers are read: throttling (503, S3's
SlowDown) and a connection reset mid-body are retried with bounded backoff
and jitter; an object deleted or replaced between the listing and the read
is a clear error naming the file, never a header read from the wrong
object. Plus a corrupted header cache and a full disk during
the write step: a clear error and the previous index intact."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from conftest import REPO

from chunkindex.formats.tiff.headers import TiffHeaderError, read_batch
from chunkindex.pipeline import store_spec
from chunkindex.recipe import recipe_from_dict
from chunkindex.sources.listing import list_sources
from chunkindex.testing.servers import HttpServer, MotoS3Server, S3FaultProxy

pytestmark = pytest.mark.network_local
FIXTURE_SET = "ghrsst-deflate-pred1"
DAY = "2024/01/31/20240131090000-JPL-L4_GHRSST-SSTfnd-MUR-GLOB-v02.0-fv04.1_analysed_sst.tif"


@pytest.fixture
def archive(tmp_path, fixtures_root) -> Path:
    """A copy of the demo COGs the tests may delete or rewrite."""
    return Path(shutil.copytree(fixtures_root / FIXTURE_SET, tmp_path / "archive"))


def _recipe(url: str):
    doc = yaml.safe_load((REPO / "recipes/ghrsst-demo-deflate.yaml").read_text())
    doc["source"] = {"url": url + "/", "pattern": doc["source"]["pattern"],
                     "template": {"start": "2024-01-30", "end": "2024-02-02", "step": "day"}}
    return recipe_from_dict(doc)


def _list_and_read(http: HttpServer, before_reading=None, recipe=None) -> tuple[pa.Table, pa.Table]:
    recipe = recipe or _recipe(http.url)
    spec = store_spec(recipe, REPO)
    manifest = list_sources(recipe, spec)
    if before_reading is not None:
        before_reading()
    return manifest, read_batch(recipe, spec, manifest)


@pytest.fixture
def clean_headers(archive) -> pa.Table:
    with HttpServer(archive) as http:
        return _list_and_read(http)[1]


@pytest.mark.parametrize("faults", [["503", "503"], ["slowdown", "slowdown", "slowdown"], ["reset"],
                                    ["503", "reset", "slowdown"]])
def test_throttling_and_resets_are_retried(archive, clean_headers, faults):
    with HttpServer(archive) as http:
        http.faults[DAY] = list(faults)
        _, headers = _list_and_read(http)
        assert http.faults[DAY] == []  # every fault was served ...
        assert http.gets[DAY] > len(faults)  # ... and the read retried past them
    assert headers.equals(clean_headers)


def test_a_source_that_stays_throttled_fails_after_a_bounded_number_of_tries(archive):
    with HttpServer(archive) as http:
        http.faults[DAY] = ["slowdown"] * 1000
        with pytest.raises(TiffHeaderError, match=rf"{DAY}: cannot read the TIFF header: .*503") as error:
            _list_and_read(http)
        # obstore's retries (RETRY_CONFIG) times the header reader's attempts.
        assert http.gets[DAY] <= 4 * 4
    assert "attempts" in str(error.value)


def test_an_object_deleted_after_the_listing_is_named(archive):
    with HttpServer(archive) as http, \
            pytest.raises(TiffHeaderError, match=rf"{DAY}: cannot read the TIFF header: .*(not found|404)"):
        _list_and_read(http, before_reading=(archive / DAY).unlink)


def test_an_object_gone_while_reading_is_named(archive):
    with HttpServer(archive) as http:
        http.faults[DAY] = ["gone"]
        with pytest.raises(TiffHeaderError, match=rf"{DAY}: cannot read the TIFF header"):
            _list_and_read(http)


def test_an_object_replaced_after_the_listing_is_refused_not_misread(archive):
    # Same size, other bytes: the listing's size cannot tell; its ETag does.
    def replace() -> None:
        data = bytearray((archive / DAY).read_bytes())
        data[-1] ^= 0xFF
        (archive / (DAY + ".new")).write_bytes(data)
        os.replace(archive / (DAY + ".new"), archive / DAY)

    with HttpServer(archive) as http, \
            pytest.raises(TiffHeaderError, match=rf"{DAY}: the object changed since it was listed"):
        _list_and_read(http, before_reading=replace)


# --- the same faults through S3 (moto behind a fault-injecting proxy) ------------------------


@pytest.fixture(scope="module")
def s3(fixtures_root):
    """moto's S3 server holding the demo COGs, the fault proxy in front of
    it, and a client of the server itself (to delete or replace objects)."""
    import boto3

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    with MotoS3Server() as moto, S3FaultProxy(moto.endpoint) as proxy:
        client = boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="opendata")
        for path in sorted((fixtures_root / FIXTURE_SET).rglob("*.tif")):
            client.upload_file(str(path), "opendata", f"ghrsst/{path.relative_to(fixtures_root / FIXTURE_SET)}",
                               ExtraArgs={"ACL": "public-read"})  # an anonymous public bucket
        yield proxy, client


@pytest.fixture
def s3_recipe(s3, fixtures_root):
    """A recipe listing and reading the COGs through the proxy, and the
    S3 key of DAY (put back as it was after the test)."""
    proxy, client = s3
    doc = yaml.safe_load((REPO / "recipes/ghrsst-demo-deflate.yaml").read_text())
    doc["source"] = {"url": "s3://opendata/ghrsst", "pattern": doc["source"]["pattern"],
                     "store_options": {"endpoint": proxy.endpoint, "region": "us-east-1", "skip_signature": True}}
    proxy.gets.clear()
    yield recipe_from_dict(doc), f"opendata/ghrsst/{DAY}"
    proxy.faults.clear()
    client.upload_file(str(fixtures_root / FIXTURE_SET / DAY), "opendata", f"ghrsst/{DAY}",
                       ExtraArgs={"ACL": "public-read"})


@pytest.mark.parametrize("faults", [["503", "503"], ["slowdown", "slowdown", "slowdown"], ["reset"],
                                    ["503", "reset", "slowdown"]])
def test_s3_throttling_and_resets_are_retried(s3, s3_recipe, clean_headers, faults):
    proxy, _ = s3
    recipe, key = s3_recipe
    proxy.faults[key] = list(faults)
    _, headers = _list_and_read(None, recipe=recipe)
    assert proxy.faults[key] == []  # every fault was served ...
    assert proxy.gets[key] > len(faults)  # ... and the read retried past them
    assert headers.equals(clean_headers)  # the same headers as read from the HTTP server


def test_s3_throttling_that_does_not_stop_fails_after_a_bounded_number_of_tries(s3, s3_recipe):
    proxy, _ = s3
    recipe, key = s3_recipe
    proxy.faults[key] = ["slowdown"] * 1000
    with pytest.raises(TiffHeaderError, match=rf"{DAY}: cannot read the TIFF header: .*503.*attempts"):
        _list_and_read(None, recipe=recipe)
    assert proxy.gets[key] <= 4 * 4


def test_an_s3_object_deleted_after_the_listing_is_named(s3, s3_recipe):
    _, client = s3
    recipe, key = s3_recipe
    bucket, name = key.split("/", 1)
    with pytest.raises(TiffHeaderError, match=rf"{DAY}: cannot read the TIFF header: .*(not found|404|NoSuchKey)"):
        _list_and_read(None, recipe=recipe, before_reading=lambda: client.delete_object(Bucket=bucket, Key=name))


def test_an_s3_object_replaced_after_the_listing_is_refused_not_misread(s3, s3_recipe):
    _, client = s3
    recipe, key = s3_recipe
    bucket, name = key.split("/", 1)

    def replace() -> None:  # same size, other bytes: a new ETag
        data = bytearray(client.get_object(Bucket=bucket, Key=name)["Body"].read())
        data[-1] ^= 0xFF
        client.put_object(Bucket=bucket, Key=name, Body=bytes(data), ACL="public-read")

    with pytest.raises(TiffHeaderError, match=rf"{DAY}: the object changed since it was listed"):
        _list_and_read(None, recipe=recipe, before_reading=replace)


# --- local faults in the workflow ------------------------------------------------------------


def _snakemake(results: Path, *extra: str, preexec=None) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("snakemake"))
    return subprocess.run([exe, *extra, str(results / "ghrsst-demo-deflate/index/ghrsst-demo-deflate.parq"),
                           "--config", "dataset=ghrsst-demo-deflate", f"results_dir={results}"],
                          cwd=REPO, capture_output=True, text=True, preexec_fn=preexec, check=False)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def written(tmp_path_factory, fixtures_root) -> Path:
    results = tmp_path_factory.mktemp("faults")
    done = _snakemake(results)
    assert done.returncode == 0, done.stderr[-3000:]
    return results


def test_a_corrupted_header_cache_is_named_and_the_index_kept(written):
    index = written / "ghrsst-demo-deflate/index/ghrsst-demo-deflate.parq"
    before = _tree(index)
    batch = written / "ghrsst-demo-deflate/headers/batch-00000.arrow"
    good = batch.read_bytes()
    try:
        batch.write_bytes(good[: len(good) // 2])  # a torn cache file (same mtime order: newer than the index)
        result = _snakemake(written, "--forcerun", "write")
        assert result.returncode != 0
        assert f"{batch}: unreadable header table" in result.stderr, result.stderr[-3000:]
        assert _tree(index) == before
    finally:
        batch.write_bytes(good)


def test_bytes_flipped_in_a_header_cache_file_are_caught(written):
    """Arrow IPC has no checksum: a byte changed inside a data buffer reads
    back without complaint, so the digest recorded at write time catches it."""
    index = written / "ghrsst-demo-deflate/index/ghrsst-demo-deflate.parq"
    before = _tree(index)
    batch = written / "ghrsst-demo-deflate/headers/batch-00000.arrow"
    good = batch.read_bytes()
    table = pa.ipc.open_file(pa.py_buffer(good)).read_all()  # from a copy of its bytes (the file will change)
    # The largest buffer of the table (tile offsets or sizes): where flipped bits go unnoticed by Arrow.
    largest = max((b for column in table.columns for chunk in column.chunks for b in chunk.buffers() if b),
                  key=lambda b: b.size)
    start = good.find(largest.to_pybytes())
    assert start > 0
    damaged = bytearray(good)
    damaged[start + largest.size // 2] ^= 0x10
    try:
        batch.write_bytes(damaged)
        unchecked = pa.ipc.open_file(pa.memory_map(str(batch))).read_all()  # Arrow alone reads it ...
        assert not unchecked.equals(table)  # ... and gets other values
        result = _snakemake(written, "--forcerun", "write")
        assert result.returncode != 0
        assert (f"{batch}: the header table is damaged (its contents no longer match the digest recorded when it "
                "was written): rerun the headers step (--forcerun headers)") in result.stderr, result.stderr[-3000:]
        assert _tree(index) == before
    finally:
        batch.write_bytes(good)


def test_a_full_disk_during_write_is_an_error_and_the_index_kept(written):
    index = written / "ghrsst-demo-deflate/index/ghrsst-demo-deflate.parq"
    before = _tree(index)

    def small_files() -> None:  # every file the job writes is capped at 4 KiB (EFBIG, as ENOSPC)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    result = _snakemake(written, "--forcerun", "write", preexec=small_files)
    assert result.returncode != 0
    assert "File too large" in result.stderr or "EFBIG" in result.stderr, result.stderr[-3000:]
    assert _tree(index) == before
    assert not list(index.parent.glob(".*partial-*"))


def test_a_recipe_edited_while_the_workflow_runs_is_refused(tmp_path, fixtures_root):
    from chunkindex.workflow import headers_step, list_step, write_step

    recipe = tmp_path / "ghrsst-demo-deflate.yaml"
    shutil.copy(REPO / "recipes/ghrsst-demo-deflate.yaml", recipe)
    manifest = list_step(str(recipe), str(REPO), str(tmp_path / "manifest.parquet"), str(tmp_path / "batches"))
    headers = []
    for batch in sorted((tmp_path / "batches").glob("batch-*.parquet")):
        headers.append(str(tmp_path / f"{batch.stem}.arrow"))
        headers_step(str(recipe), str(REPO), str(batch), headers[-1])
    assert manifest.num_rows == 8
    # The user edits the recipe after the headers were read, before the write.
    recipe.write_text(recipe.read_text().replace("record_size: 10", "record_size: 20"))
    outputs = {"kerchunk_parquet": str(tmp_path / "index.parq"), "state": str(tmp_path / "state.parquet")}
    with pytest.raises(ValueError, match=rf"batch-00000.arrow was made from another version of {recipe}, "
                                         "edited while the workflow ran: run the workflow again"):
        write_step(str(recipe), str(tmp_path / "manifest.parquet"), headers, outputs, threads=1)
    assert not (tmp_path / "index.parq").exists()
