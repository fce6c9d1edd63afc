"""Local servers for tests and benchmarks: a static HTTP server with Range
support (and an optional fixed delay per request, to imitate cloud latency,
and injected faults), moto's S3 server, and a proxy in front of it that
injects the same faults into S3 requests; all on 127.0.0.1 only."""

from __future__ import annotations

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


async def _serve_range_requests(root: Path, port: int, delay: float) -> None:
    """A small asyncio HTTP/1.1 server: HEAD and GET (with one byte range) of
    files under `root`, each request answered after `delay` seconds."""
    import asyncio
    import os

    root = root.resolve()  # noqa: ASYNC240  once, at start-up

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                if delay:
                    await asyncio.sleep(delay)
                path = (root / target.split("?", 1)[0].lstrip("/")).resolve()
                if not str(path).startswith(str(root)) or not path.is_file():
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
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


if __name__ == "__main__":
    import asyncio

    asyncio.run(_serve_range_requests(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
