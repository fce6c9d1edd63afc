"""Object stores (obstore) for recipe sources: local folders, S3, HTTP(S)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


@dataclass(frozen=True)
class StoreSpec:
    """Where a source lives: `url` for obstore, `public_url` for the index."""

    url: str
    options: dict[str, Any] = field(default_factory=dict)
    public_url: str | None = None

    @property
    def scheme(self) -> str:
        scheme = urlparse(self.url).scheme
        return scheme if scheme in {"s3", "http", "https", "file", "gs", "az", "memory"} else "file"

    @property
    def can_list(self) -> bool:
        """HTTP servers (THREDDS, plain web servers) cannot list."""
        return self.scheme not in {"http", "https"}


def resolve_local(url: str, base_dir: str | Path) -> str:
    """Absolute `file://` URL for a local path (relative paths against `base_dir`)."""
    if urlparse(url).scheme in {"s3", "http", "https", "gs", "az", "memory"}:
        return url
    if url.startswith("file://"):
        return url
    path = Path(url)
    if not path.is_absolute():
        path = Path(base_dir) / path
    return path.resolve().as_uri()


# obstore retries 5xx answers (503, S3's SlowDown), dropped connections and
# timeouts with exponential backoff and jitter; bounded here so a source that
# stays throttled fails in seconds (the header reader retries each range a
# few times more) rather than after obstore's default 10 retries of up to 15 s.
RETRY_CONFIG = {"max_retries": 3, "retry_timeout": timedelta(seconds=30),
                "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2),
                            "base": 2}}


def open_store(spec: StoreSpec) -> Any:
    """An obstore store rooted at `spec.url` (remote ones retry as RETRY_CONFIG
    unless the recipe's `store_options` give a `retry_config`)."""
    from obstore.store import from_url

    options = dict(spec.options)
    if spec.scheme not in {"file", "memory"}:
        options.setdefault("retry_config", RETRY_CONFIG)
    client_options = options.pop("client_options", None)
    if spec.scheme in {"http", "https", "s3"} and urlparse(
        options.get("endpoint", spec.url)
    ).scheme == "http":
        # Local test servers speak plain HTTP.
        client_options = {**(client_options or {}), "allow_http": True}
    kwargs: dict[str, Any] = dict(options)
    if client_options:
        kwargs["client_options"] = client_options
    return from_url(spec.url, **kwargs)


def reference_url(spec: StoreSpec, relative_path: str) -> str:
    """The absolute path or URL written into the index for one file.

    GDAL resolves a relative reference against the array's folder inside the
    index, so references are always absolute: a local path, `s3://` or https.
    """
    base = spec.public_url or spec.url
    if base.startswith("file://"):
        base = urlparse(base).path
    return base.rstrip("/") + "/" + relative_path.lstrip("/")


def url_protocol(url: str) -> str:
    """The fsspec protocol of a reference URL: its scheme, `file` for a local path.

    Example:
        >>> url_protocol("s3://bucket/a.tif"), url_protocol("/data/a.tif")
        ('s3', 'file')
    """
    return urlparse(url).scheme or "file"


def is_local(url: str) -> bool:
    """True for a local path or `file://` URL (as the index writes local references).

    Example:
        >>> is_local("/data/a.nc"), is_local("https://host/a.nc")
        (True, False)
    """
    return url_protocol(url) == "file"


def gdal_module() -> Any:
    """`osgeo.gdal`, raising exceptions (imported on first use)."""
    from osgeo import gdal

    gdal.UseExceptions()
    return gdal


def gdal_path(url: str) -> str:
    """The GDAL virtual file system path of a reference URL."""
    if url.startswith("s3://"):
        return "/vsis3/" + url[len("s3://"):]
    if url.startswith(("http://", "https://")):
        return "/vsicurl/" + url
    if url.startswith("file://"):
        return urlparse(url).path
    return url


class ObjectFile(io.RawIOBase):
    """A read-only, seekable file over an obstore object, for h5py.

    obstore's reader returns its own Bytes type; h5py wants `readinto`."""

    def __init__(self, store: Any, path: str, buffer_size: int = 1 << 20) -> None:
        import obstore

        self._reader = obstore.open_reader(store, path, buffer_size=buffer_size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._reader.seek(offset, whence)

    def tell(self) -> int:
        return self._reader.tell()

    def readinto(self, buffer: Any) -> int:
        data = memoryview(self._reader.read(len(buffer)))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._reader.close()
        super().close()
