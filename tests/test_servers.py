"""The local HTTP servers used by the remote tests and the latency benchmark."""

import time
import urllib.request

import pytest

from chunkindex.testing.servers import FastHttpServer, HttpServer


@pytest.mark.parametrize("server_class", [HttpServer, FastHttpServer])
def test_range_head_and_delay(server_class, tmp_path):
    data = bytes(range(256)) * 40
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/file.bin").write_bytes(data)
    with server_class(tmp_path, delay=0.05) as server:
        start = time.perf_counter()
        request = urllib.request.Request(server.url + "/sub/file.bin", headers={"Range": "bytes=100-299"})
        with urllib.request.urlopen(request) as response:
            assert response.status == 206
            assert response.headers["Content-Range"] == f"bytes 100-299/{len(data)}"
            assert response.read() == data[100:300]
        assert time.perf_counter() - start >= 0.05
        head = urllib.request.Request(server.url + "/sub/file.bin", method="HEAD")
        with urllib.request.urlopen(head) as response:
            assert int(response.headers["Content-Length"]) == len(data)
            assert response.headers["ETag"]
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url + "/sub/missing.bin")
        assert err.value.code == 404
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(server.url + "/../etc/passwd")


def test_folder_s3_server_lists_pages_and_reads_ranges_through_obstore_and_gdal(tmp_path, gdal):
    """The S3 facade the scale benchmark reads its archives through: obstore
    lists every key (past a page of 1,000) and reads ranges; GDAL's /vsis3/
    reads a file; paging, prefixes and delimiters follow ListObjectsV2."""
    import obstore
    from obstore.store import S3Store

    from chunkindex.testing.servers import FolderS3Server, _folder_keys, _s3_listing

    for i in range(1203):
        folder = tmp_path / f"{i // 100:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i:04d}.bin").write_bytes(bytes([i % 256]) * (i + 1))
    with FolderS3Server(tmp_path, "archive") as s3:
        store = S3Store("archive", endpoint=s3.endpoint, skip_signature=True, region="us-east-1",
                        client_options={"allow_http": True})
        listed = [meta for page in obstore.list(store, chunk_size=1000) for meta in page]
        assert len(listed) == 1203 and {m["size"] for m in listed} == set(range(1, 1204))
        assert bytes(obstore.get_range(store, "12/f1202.bin", start=10, end=20)) == bytes([1202 % 256]) * 10
        top = obstore.list_with_delimiter(store)
        assert sorted(top["common_prefixes"]) == [f"{i:02d}" for i in range(13)]
        options = {"AWS_S3_ENDPOINT": f"127.0.0.1:{s3.port}", "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE",
                   "AWS_NO_SIGN_REQUEST": "YES", "AWS_REGION": "us-east-1"}
        with gdal.config_options(options):
            handle = gdal.VSIFOpenL("/vsis3/archive/03/f0300.bin", "rb")
            assert gdal.VSIFReadL(1, 301, handle) == bytes([300 % 256]) * 301
            gdal.VSIFCloseL(handle)
            assert len(gdal.ReadDir("/vsis3/archive/05/")) == 100
    keys = _folder_keys(tmp_path)
    page = _s3_listing(keys, "archive", {"list-type": "2", "prefix": "01/", "max-keys": "60"}).decode()
    assert page.count("<Key>") == 60 and "<IsTruncated>true</IsTruncated>" in page
    token = page.split("<NextContinuationToken>")[1].split("<")[0]
    rest = _s3_listing(keys, "archive", {"list-type": "2", "prefix": "01/", "continuation-token": token}).decode()
    assert rest.count("<Key>") == 40 and "<IsTruncated>false</IsTruncated>" in rest
