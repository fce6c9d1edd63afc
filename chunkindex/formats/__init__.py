"""Source formats, one folder each (`tiff/`, `hdf/`), behind one typed
`Extractor` Protocol and a registry keyed by the recipe's `format`. A new
format is a new folder and one registry entry."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeAlias

import numpy as np
import pyarrow as pa

from chunkindex.model import AssembledIndex
from chunkindex.recipe import Recipe
from chunkindex.sources.stores import StoreSpec

# JSON values as read from an index's metadata (.zarray, .zattrs).
JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = "dict[str, JsonValue]"
Progress: TypeAlias = Callable[[int, int], None]


class SourceTruth(Protocol):
    """What validation compares an index with, read from the source files
    by another route than the one that wrote the index."""

    notes: list[str]

    def bind(self, index: Path, meta: JsonObject) -> None:
        """Learn what it needs from the index about to be validated."""
        ...

    def tile_ref(self, url: str, zarray: JsonObject, attrs: JsonObject, dims: list[str],
                 index: tuple[int, ...]) -> tuple[int, int]:
        """(offset, size) of a chunk from the source's own chunk table."""
        ...

    def cross_check(self, url: str, zarray: JsonObject, attrs: JsonObject, dims: list[str],
                    index: tuple[int, ...], expected: tuple[int, int]) -> str | None:
        """A second source table's disagreement with `expected`, if any."""
        ...

    def pixels(self, url: str, zarray: JsonObject, attrs: JsonObject, dims: list[str],
               index: tuple[int, ...]) -> np.ndarray:
        """The chunk's values as read from the source (clipped to the array)."""
        ...

    def fill_value(self, url: str, zarray: JsonObject, attrs: JsonObject) -> float:
        """What the source's chunks with no data read as (its nodata or fill value)."""
        ...

    def file_problem(self, url: str, name: str, attrs: JsonObject, dims: list[str],
                     index: tuple[int, ...]) -> str | None:
        """Why `url` is not the file chunk `index` comes from, if the source can tell."""
        ...


class Extractor(Protocol):
    """Reads a batch of files' headers, assembles the arrays of an index, and
    gives the source truth validation compares the index with."""

    def read_batch(self, recipe: Recipe, spec: StoreSpec, batch: pa.Table,
                   progress: Progress | None = None) -> pa.Table:
        """One row per (file, level/variable) with the chunk table as list columns."""
        ...

    def assemble(self, recipe: Recipe, manifest: pa.Table, headers: pa.Table) -> AssembledIndex:
        """The arrays (and notes) of an index from the manifest and all header rows."""
        ...

    def source(self, recipe: Recipe) -> SourceTruth:
        """The source-side truth used by validation (chunk tables, pixels)."""
        ...


# Bumped whenever the header tables change shape: a rule parameter, so that
# Snakemake re-reads headers cached by an older chunkindex.
HEADER_FORMAT_VERSION = 6  # 3: Arrow IPC files; 4: TIFF short_edges, bits, colour map, RPC, GCPs;
# 5: TIFF `geographic` from the GeoKeys; 6: TIFF units/description, every HDF5 attribute

# Format -> "module:class" (imported on first use: each format's libraries load only when needed).
EXTRACTORS = {
    "cog": "chunkindex.formats.tiff:TiffExtractor",
    "netcdf4": "chunkindex.formats.hdf:HdfExtractor",
    "hdf5": "chunkindex.formats.hdf:HdfExtractor",
}


def extractor_for(fmt: str) -> Extractor:
    """The extractor of a recipe `format` (its module is imported lazily)."""
    if fmt not in EXTRACTORS:
        raise ValueError(f"no header extractor for format {fmt!r} (known: {', '.join(EXTRACTORS)})")
    module, name = EXTRACTORS[fmt].split(":")
    extractor: Extractor = getattr(importlib.import_module(module), name)()
    return extractor
