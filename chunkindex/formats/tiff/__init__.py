"""COGs and tiled GeoTIFFs: header reading (`ifd`, `headers`), the codec
chain (`chain`), assembly into time-stacked arrays (`assemble`) and the
source truth validation compares with (`source`)."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from chunkindex.formats.tiff.source import TiffSource
from chunkindex.model import AssembledIndex
from chunkindex.recipe import Recipe
from chunkindex.sources.stores import StoreSpec


class TiffExtractor:
    """Extractor for COGs and tiled GeoTIFFs.

    `headers.tiff_reader` picks the reader: chunkindex's numpy tag reader
    (fast) or async-tiff; each batch's first file is re-read with the other.
    """

    def read_batch(self, recipe: Recipe, spec: StoreSpec, batch: pa.Table,
                   progress: Callable[[int, int], None] | None = None) -> pa.Table:
        from chunkindex.formats.tiff.headers import read_batch

        return read_batch(recipe, spec, batch, progress)

    def assemble(self, recipe: Recipe, manifest: pa.Table, headers: pa.Table) -> AssembledIndex:
        from chunkindex.formats.tiff.assemble import assemble_cog

        return assemble_cog(recipe, manifest, headers)

    def source(self, recipe: Recipe) -> TiffSource:
        return TiffSource(recipe)
