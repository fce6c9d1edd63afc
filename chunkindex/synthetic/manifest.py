"""Fixture sets: dispatch to a generator, write atomically, record checksums."""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "MANIFEST.sha256"


@dataclass(frozen=True)
class FixtureSet:
    """One named fixture set from the config's `fixtures.sets`."""

    name: str
    kind: str
    seed: int
    options: dict[str, Any] = field(default_factory=dict)


def sha256_of(path: Path, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path) -> Path:
    """Write `MANIFEST.sha256` (sha256, size, relative path; sorted) for every file in `folder`."""
    lines = []
    digests: dict[tuple[int, int], str] = {}  # hard links are hashed once
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        rel = path.relative_to(folder).as_posix()
        stat = path.stat()
        key = (stat.st_dev, stat.st_ino)
        if key not in digests:
            digests[key] = sha256_of(path)
        lines.append(f"{digests[key]}  {stat.st_size:>12}  {rel}\n")
    manifest = folder / MANIFEST_NAME
    manifest.write_text("".join(lines))
    return manifest


def read_manifest(path: Path) -> dict[str, str]:
    """Relative path -> sha256 from a manifest file."""
    entries = {}
    for line in path.read_text().splitlines():
        digest, _size, rel = line.split(maxsplit=2)
        entries[rel] = digest
    return entries


GENERATOR_MODULES = {
    "ghrsst-cog": "chunkindex.synthetic.ghrsst",
    "ghrsst-scale-cog": "chunkindex.synthetic.ghrsst_scale",
    "bran-netcdf": "chunkindex.synthetic.bran",
    "bran-scale-netcdf": "chunkindex.synthetic.bran_scale",
    "edge-cases": "chunkindex.synthetic.edge_cases",
    "modis-swath": "chunkindex.synthetic.swath",
    "roms-curvilinear": "chunkindex.synthetic.curvilinear",
    "utm-cog": "chunkindex.synthetic.utm",
    "gcp-tiff": "chunkindex.synthetic.gcp",
    "tiff-features": "chunkindex.synthetic.tiff_features",
}


def _generator(kind: str) -> Callable[[FixtureSet, Path], None]:
    # Imported lazily: GDAL and netCDF4 are only needed by the kinds that use them.
    return importlib.import_module(GENERATOR_MODULES[kind]).generate


def generate_fixture_set(fixture_set: FixtureSet, folder: Path) -> Path:
    """Generate `fixture_set` into `folder`, replacing it only once complete.

    Returns the manifest path. Files are written into a temporary sibling
    folder first, so an interrupted run never leaves a half-written set where
    a good one was.
    """
    if fixture_set.kind not in GENERATOR_MODULES:
        raise ValueError(
            f"fixture set {fixture_set.name!r}: unknown kind {fixture_set.kind!r} "
            f"(expected one of {sorted(GENERATOR_MODULES)})"
        )
    generate = _generator(fixture_set.kind)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        generate(fixture_set, staging)
        write_manifest(staging)
        if folder.exists():
            retired = folder.parent / f".{folder.name}.old-{os.getpid()}"
            folder.rename(retired)
            staging.rename(folder)
            shutil.rmtree(retired)
        else:
            staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder / MANIFEST_NAME
