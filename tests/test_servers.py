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
