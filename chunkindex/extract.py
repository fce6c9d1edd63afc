"""Header extractors, one per source format, behind one small Protocol."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

import pyarrow as pa

from chunkindex.recipe import Recipe
from chunkindex.stores import StoreSpec


class HeaderExtractor(Protocol):
    """Reads a batch of files' headers, and assembles the arrays of an index."""

    def read_batch(self, recipe: Recipe, spec: StoreSpec, batch: pa.Table,
                   progress: Callable[[int, int], None] | None = None) -> pa.Table:
        """One row per (file, level/variable) with the chunk table as list columns."""
        ...

    def assemble(self, recipe: Recipe, manifest: pa.Table, headers: pa.Table) -> Any:
        """An AssembledIndex (arrays + notes) from the manifest and all header rows."""
        ...

    def source(self, recipe: Recipe) -> Any:
        """The source-side truth used by validation (tile tables, pixels)."""
        ...


# Bumped whenever the header tables change shape: a rule parameter, so that
# Snakemake re-reads headers cached by an older chunkindex.
HEADER_FORMAT_VERSION = 3  # 3: Arrow IPC files

EXTRACTORS = {
    "cog": "chunkindex.tiff:TiffExtractor",
    "netcdf4": "chunkindex.hdf:HdfExtractor",
    "hdf5": "chunkindex.hdf:HdfExtractor",
}


def extractor_for(fmt: str) -> HeaderExtractor:
    """The extractor of a recipe `format` (its module is imported lazily)."""
    if fmt not in EXTRACTORS:
        raise ValueError(f"no header extractor for format {fmt!r} (known: {', '.join(EXTRACTORS)})")
    module, name = EXTRACTORS[fmt].split(":")
    return getattr(importlib.import_module(module), name)()
