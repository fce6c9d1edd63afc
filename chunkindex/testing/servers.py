"""Local servers for tests and benchmarks: a static HTTP server with Range
support (and an optional fixed delay per request, to imitate cloud latency,
and injected faults), moto's S3 server, a proxy in front of it that injects
the same faults into S3 requests, and an S3 facade over a local folder (for
archives too large to upload into moto); all on 127.0.0.1 only."""

from __future__ import annotations

import bisect
import email.utils
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Faults a GET can be answered with (HttpServer.faults): throttling as S3
# sends it, a connection reset in the middle of the body, an object deleted,
# access refused.
FAULTS = ("503", "slowdown", "reset", "gone", "forbidden")
_SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")


class RangeHandler(BaseHTTPRequestHandler):
    """GET/HEAD of files under `root`, honouring single byte ranges and
    `If-Match`; GETs of a path listed in `faults` take its next fault."""

    root: Path
    delay: float = 0.0
    counter: list[int]
    failures: list[int]  # GET requests still to refuse with 503 (a transient server error)
    faults: dict[str, list[str]]
    gets: dict[str, int]
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def parse_request(self) -> bool:
        # The delay stands in for a network round trip: every request waits it.
        ok = super().parse_request()
        if ok:
            self.counter[0] += 1
            if self.delay:
                time.sleep(self.delay)
        return ok

    def _file(self) -> Path | None:
        path = (self.root / self.path.split("?", 1)[0].lstrip("/")).resolve()
        if not str(path).startswith(str(self.root.resolve())) or not path.is_file():
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return path

    @staticmethod
    def _etag(path: Path) -> str:
        stat = path.stat()
        return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'

    def _headers(self, path: Path, length: int, status: int, extra: dict[str, str]) -> None:
        self.send_response(status)
        stat = path.stat()
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
        self.send_header("ETag", self._etag(path))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()

    def do_HEAD(self) -> None:
        path = self._file()
        if path is not None:
            self._headers(path, path.stat().st_size, 200, {})

    def _empty(self, status: int, body: bytes = b"", extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.failures[0] > 0:
            self.failures[0] -= 1
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        key = self.path.split("?", 1)[0].lstrip("/")
        self.gets[key] = self.gets.get(key, 0) + 1
        planned = self.faults.get(key)
        fault = planned.pop(0) if planned else None
        if fault == "503":
            return self._empty(503, extra={"Retry-After": "0"})
        if fault == "slowdown":
            return self._empty(503, _SLOWDOWN, {"Content-Type": "application/xml"})
        if fault == "gone":
            return self._empty(404)
        if fault == "forbidden":
            return self._empty(403)
        path = self._file()
        if path is None:
            return
        if_match = self.headers.get("If-Match")
        if if_match and if_match not in ("*", self._etag(path)):
            return self._empty(412)
        size = path.stat().st_size
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if match:
            start_text, end_text = match.groups()
            if start_text:
                start, end = int(start_text), min(int(end_text) if end_text else size - 1, size - 1)
            else:
                start, end = max(size - int(end_text), 0), size - 1
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._headers(path, end - start + 1, 206, {"Content-Range": f"bytes {start}-{end}/{size}"})
        else:
            start, end = 0, size - 1
            self._headers(path, size, 200, {})
        with open(path, "rb") as handle:
            handle.seek(start)
            body = handle.read(end - start + 1)
        if fault == "reset":  # half the body, then the connection drops
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)


class HttpServer:
    """A static file server on 127.0.0.1 with Range support; the first
    `fail_first` GET requests are answered 503 Service Unavailable.

    `faults[path]` is a list of faults (FAULTS) the next GETs of `path`
    (relative to `root`) answer with, one per request; `gets[path]` counts
    the GETs of each path."""

    def __init__(self, root: Path, delay: float = 0.0, fail_first: int = 0) -> None:
        self.counter = [0]
        self.faults: dict[str, list[str]] = {}
        self.gets: dict[str, int] = {}
        handler = type("Handler", (RangeHandler,), {"root": Path(root), "delay": delay, "counter": self.counter,
                                                    "failures": [fail_first], "faults": self.faults,
                                                    "gets": self.gets})
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 512
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self) -> int:
        return self.counter[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class S3FaultHandler(BaseHTTPRequestHandler):
    """Forwards every request to the S3 server at `upstream` and back; a
    GET of a `bucket/key` listed in `faults` takes its next fault instead:
    "503", "slowdown" (S3's throttling answer) or "reset" (the server's
    answer cut off in the middle of its body)."""

    upstream: tuple[str, int]
    faults: dict[str, list[str]]
    gets: dict[str, int]
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _fault(self) -> str | None:
        if self.command != "GET":
            return None
        key = self.path.split("?", 1)[0].lstrip("/")
        self.gets[key] = self.gets.get(key, 0) + 1
        planned = self.faults.get(key)
        return planned.pop(0) if planned else None

    def _forward(self) -> None:
        fault = self._fault()
        if fault == "503":
            return self._empty(503, extra={"Retry-After": "0"})
        if fault == "slowdown":
            return self._empty(503, _SLOWDOWN, {"Content-Type": "application/xml"})
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body,
                             headers={k: v for k, v in self.headers.items() if k.lower() != "connection"})
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                self.send_header(key, value)
        # A HEAD's length is the object's, not the (empty) body's.
        self.send_header("Content-Length", answer.getheader("Content-Length", "0") if self.command == "HEAD"
                         else str(len(data)))
        self.end_headers()
        if fault == "reset":  # half the body, then the connection drops
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return None
        self.wfile.write(data)
        return None

    _empty = RangeHandler._empty
    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward


class S3FaultProxy:
    """A proxy on 127.0.0.1 in front of an S3 server (`endpoint`, e.g. a
    MotoS3Server's): clients use its `endpoint` instead.

    `faults["bucket/key"]` is a list of faults ("503", "slowdown", "reset")
    the next GETs of that object answer with, one per request; `gets`
    counts the GETs of each object. Objects deleted or replaced between a
    listing and a read are real changes, made in the S3 server itself."""

    def __init__(self, endpoint: str) -> None:
        host, port = endpoint.removeprefix("http://").rsplit(":", 1)
        self.faults: dict[str, list[str]] = {}
        self.gets: dict[str, int] = {}
        handler = type("Handler", (S3FaultHandler,), {"upstream": (host, int(port)), "faults": self.faults,
                                                      "gets": self.gets})
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> S3FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _ServerProcess:
    """A server in a subprocess on 127.0.0.1:`port`, ready once it accepts."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    def _start(self, command: list[str], what: str) -> None:
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self._stop()
        raise RuntimeError(f"{what} did not start within 30 s")

    def _stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


class MotoS3Server(_ServerProcess):
    """moto's S3 server in a subprocess on 127.0.0.1."""

    def __init__(self) -> None:
        self.port = free_port()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MotoS3Server:
        exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or "moto_server"
        self._start([exe, "-H", "127.0.0.1", "-p", str(self.port)], "moto_server")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()


def _s3_listing(keys: list[tuple[str, int, float]], bucket: str, query: dict[str, str]) -> bytes:
    """A ListObjects (V2, or V1 without `list-type`) answer over the sorted
    (key, size, mtime) of a folder: prefix, delimiter, max-keys, paging."""
    from xml.sax.saxutils import escape

    prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
    v2 = query.get("list-type") == "2"
    after = query.get("continuation-token") or query.get("start-after", "") if v2 else query.get("marker", "")
    limit = min(int(query.get("max-keys", "1000")), 1000)
    if delimiter and after.endswith(delimiter):  # the last page ended on a common prefix: skip what it holds
        first = bisect.bisect_left(keys, (after + "\U0010ffff",))
    elif after:
        first = bisect.bisect_right(keys, (after, float("inf"), float("inf")))
    else:
        first = bisect.bisect_left(keys, (prefix,))
    contents: list[str] = []
    prefixes: list[str] = []
    last = ""
    i = first
    while i < len(keys) and len(contents) + len(prefixes) < limit:
        key, size, mtime = keys[i]
        if not key.startswith(prefix):
            break
        rest = key[len(prefix):]
        if delimiter and delimiter in rest:
            common = prefix + rest.split(delimiter, 1)[0] + delimiter
            prefixes.append(f"<CommonPrefixes><Prefix>{escape(common)}</Prefix></CommonPrefixes>")
            # skip every key under this common prefix
            i = bisect.bisect_left(keys, (common + "\U0010ffff",))
            last = common
            continue
        modified = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(mtime))
        contents.append(f"<Contents><Key>{escape(key)}</Key><LastModified>{modified}</LastModified>"
                        f"<ETag>&quot;{size:x}-{int(mtime):x}&quot;</ETag><Size>{size}</Size>"
                        "<StorageClass>STANDARD</StorageClass></Contents>")
        last = key
        i += 1
    truncated = i < len(keys) and keys[i][0].startswith(prefix)
    paging = ""
    if truncated:
        paging = (f"<NextContinuationToken>{escape(last)}</NextContinuationToken>" if v2
                  else f"<NextMarker>{escape(last)}</NextMarker>")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
            + (f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>" if v2 else "")
            + f"<MaxKeys>{limit}</MaxKeys><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
            + paging + "".join(contents) + "".join(prefixes) + "</ListBucketResult>").encode()


def _folder_keys(root: Path) -> list[tuple[str, int, float]]:
    """(key, size, mtime) of every file under `root`, sorted by key."""
    keys = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            stat = path.stat()
            keys.append((path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime))
    keys.sort()
    return keys


async def _serve_range_requests(root: Path, port: int, delay: float, bucket: str | None = None) -> None:
    """A small asyncio HTTP/1.1 server: HEAD and GET (with one byte range) of
    files under `root`, each request answered after `delay` seconds. With
    `bucket`, it answers as a path-style S3 endpoint whose only bucket is
    `root` (`/bucket/key`, and ListObjects on `/bucket`), requests unsigned
    or signed alike (signatures are not checked: a local test server)."""
    import asyncio
    import os
    from urllib.parse import parse_qsl, unquote

    root = root.resolve()  # noqa: ASYNC240  once, at start-up
    listing: list[list[tuple[str, int, float]]] = []  # the folder's keys, walked at each listing's first page

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                if delay:
                    await asyncio.sleep(delay)
                target, _, query_text = target.partition("?")
                relative = unquote(target).lstrip("/")
                if bucket is not None:
                    name, _, relative = relative.partition("/")
                    query = dict(parse_qsl(query_text, keep_blank_values=True))
                    if name != bucket:
                        body = b"<Error><Code>NoSuchBucket</Code></Error>"
                        writer.write(f"HTTP/1.1 404 Not Found\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                        await writer.drain()
                        continue
                    if not relative and method == "GET":
                        if not (query.get("continuation-token") or query.get("marker")) or not listing:
                            listing[:] = [_folder_keys(root)]  # a new listing sees the folder as it is now
                        body = _s3_listing(listing[0], bucket, query)
                        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
                                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                        await writer.drain()
                        continue
                path = (root / relative).resolve()
                if not str(path).startswith(str(root)) or not path.is_file():
                    body = b"<Error><Code>NoSuchKey</Code></Error>" if bucket is not None and method == "GET" else b""
                    writer.write(f"HTTP/1.1 404 Not Found\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                    await writer.drain()
                    continue
                stat = path.stat()
                size = stat.st_size
                common = (f"Accept-Ranges: bytes\r\nLast-Modified: {email.utils.formatdate(stat.st_mtime, usegmt=True)}\r\n"
                          f"ETag: \"{size:x}-{int(stat.st_mtime):x}\"\r\n")
                match = re.fullmatch(r"bytes=(\d*)-(\d*)", headers.get("range", ""))
                if method == "HEAD":
                    writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n{common}\r\n".encode())
                else:
                    start, end = 0, size - 1
                    status = "200 OK"
                    extra = ""
                    if match:
                        a, b = match.groups()
                        start, end = (int(a), min(int(b) if b else size - 1, size - 1)) if a else (max(size - int(b), 0), size - 1)
                        status, extra = "206 Partial Content", f"Content-Range: bytes {start}-{end}/{size}\r\n"
                    with open(path, "rb") as handle:  # noqa: ASYNC230  a test server: local reads are instant
                        body = os.pread(handle.fileno(), end - start + 1, start)
                    writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{common}{extra}\r\n".encode() + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


class FastHttpServer(_ServerProcess):
    """The asyncio server above in its own process (so it never competes with
    the client for the GIL): for benchmarks with many concurrent requests."""

    def __init__(self, root: Path, delay: float = 0.0) -> None:
        self.root, self.delay, self.port = Path(root), delay, free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FastHttpServer:
        self._start([sys.executable, "-m", "chunkindex.testing.servers", str(self.root), str(self.port), str(self.delay)],
                    "the HTTP server")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()


class FolderS3Server(_ServerProcess):
    """A path-style S3 endpoint serving a local folder as bucket `bucket`
    (ListObjects, HEAD, ranged GET), in its own process: for benchmarks on
    archives far larger than moto could hold in memory (86,600 hard links of
    one 37 MB COG would be 3 TB uploaded). Read with
    `store_options: {endpoint: <endpoint>, skip_signature: true}` and GDAL's
    `AWS_S3_ENDPOINT`, `AWS_VIRTUAL_HOSTING=FALSE`, `AWS_HTTPS=NO`."""

    def __init__(self, root: Path, bucket: str = "archive") -> None:
        self.root, self.bucket, self.port = Path(root), bucket, free_port()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FolderS3Server:
        self._start([sys.executable, "-m", "chunkindex.testing.servers", str(self.root), str(self.port), "0",
                     self.bucket], "the S3 folder server")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()


if __name__ == "__main__":
    import asyncio

    asyncio.run(_serve_range_requests(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]),
                                      sys.argv[4] if len(sys.argv) > 4 else None))
