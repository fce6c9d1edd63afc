"""NetCDF4/HDF5: chunk tables (`headers`), the codec chain of a filter
pipeline (`chain`), concatenation of files into arrays (`assemble`) and the
source truth validation compares with (`source`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa

from chunkindex.model import AssembledIndex
from chunkindex.recipe import Recipe
from chunkindex.sources.stores import StoreSpec

if TYPE_CHECKING:
    from chunkindex.formats.hdf.source import HdfSource


class HdfExtractor:
    """Extractor for NetCDF4/HDF5 (h5py chunk walk or GDAL GetRawBlockInfo)."""

    def read_batch(self, recipe: Recipe, spec: StoreSpec, batch: pa.Table,
                   progress: Callable[[int, int], None] | None = None) -> pa.Table:
        from chunkindex.formats.hdf.headers import read_batch

        return read_batch(recipe, spec, batch, progress)

    def assemble(self, recipe: Recipe, manifest: pa.Table, headers: pa.Table) -> AssembledIndex:
        from chunkindex.formats.hdf.assemble import assemble_hdf

        return assemble_hdf(recipe, manifest, headers)

    def source(self, recipe: Recipe) -> HdfSource:
        from chunkindex.formats.hdf.source import HdfSource

        return HdfSource(recipe)
