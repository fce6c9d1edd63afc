"""Source-side truth of COG arrays for validation: tile tables and pixels
as GDAL's GTiff driver (or tifffile) reads them from the source files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from chunkindex.indexes.kerchunk import KerchunkIndex
from chunkindex.model import ChunkGrid, times_to_cf
from chunkindex.recipe import Recipe
from chunkindex.sources.listing import NamePattern
from chunkindex.sources.stores import gdal_module, gdal_path

OPEN_FILES = 16  # source files kept open while validating (least recently used closed first)


class TiffSource:
    """Source-side truth for COG arrays, through GDAL's GTiff driver, and the
    time and variable each file's name gives (with a recipe `pattern`)."""

    def __init__(self, recipe: Recipe) -> None:
        self._cache: dict[str, Any] = {}
        self.notes: list[str] = []
        self.pattern = NamePattern.compile(recipe.source.pattern) if recipe.source.pattern else None
        self.time_dim = recipe.concat.dim
        self.times: np.ndarray | None = None
        self.units = ""

    def _dataset(self, url: str) -> Any:
        if url in self._cache:
            self._cache[url] = self._cache.pop(url)  # most recently used last
        else:
            # A bounded set of open files: a sample touches up to ~100 files per
            # array, each open GTiff dataset holds its tile tables and blocks.
            while len(self._cache) >= OPEN_FILES:
                del self._cache[next(iter(self._cache))]
            self._cache[url] = gdal_module().Open(gdal_path(url))
        return self._cache[url]

    def _band(self, url: str, attrs: dict[str, Any], band: int) -> Any:
        ds = self._dataset(url)
        b = ds.GetRasterBand(band)
        info = attrs["chunkindex"]
        factor = info["overview_factor"]
        if factor != 1:
            for i in range(b.GetOverviewCount()):
                ov = b.GetOverview(i)
                if round(ds.RasterXSize / ov.XSize) == factor:
                    b = ov
                    break
            else:
                raise ValueError(f"{url}: no overview of factor {factor}")
        return b.GetMaskBand() if info.get("mask") else b

    def tile_ref(self, url: str, zarray: dict[str, Any], attrs: dict[str, Any], dims: list[str],
                 index: tuple[int, ...]) -> tuple[int, int]:
        """(offset, size) of a tile from the source's own TIFF tile table.

        GDAL's GTiff driver (`BLOCK_OFFSET_x_y`) is the source of truth, except
        where it presents blocks other than the file's (it splits large
        uncompressed strips): there tifffile reads the tags.
        """
        band, ty, tx = self._tile_position(dims, index)
        b = self._band(url, attrs, band)
        chunks = zarray["chunks"]
        y_axis = 1 if len(index) == 3 or dims[-1] == "band" else 2
        if attrs["chunkindex"].get("mask") or list(b.GetBlockSize()) != [chunks[y_axis + 1], chunks[y_axis]]:
            return self._tifffile_ref(url, attrs, band, ty, tx, zarray, y_axis)
        offset = b.GetMetadataItem(f"BLOCK_OFFSET_{tx}_{ty}", "TIFF")
        size = b.GetMetadataItem(f"BLOCK_SIZE_{tx}_{ty}", "TIFF")
        return int(offset or 0), int(size or 0)

    @staticmethod
    def _tifffile_ref(url: str, attrs: dict[str, Any], band: int, ty: int, tx: int,
                      zarray: dict[str, Any], y_axis: int) -> tuple[int, int]:
        import tifffile

        with tifffile.TiffFile(gdal_path(url)) as tif:
            page = tif.pages[attrs["chunkindex"]["ifd"]]
            per_band = len(page.dataoffsets) // (page.samplesperpixel if page.planarconfig == 2 else 1)
            across = ChunkGrid.from_zarray(zarray).counts[y_axis + 1]
            position = (band - 1) * per_band + ty * across + tx
            return int(page.dataoffsets[position]), int(page.databytecounts[position])

    @staticmethod
    def _tile_position(dims: list[str], index: tuple[int, ...]) -> tuple[int, int, int]:
        if len(index) == 3:
            return 1, index[1], index[2]
        if dims[-1] == "band":  # pixel-interleaved: all bands in one tile
            return 1, index[1], index[2]
        return index[1] + 1, index[2], index[3]

    def pixels(self, url: str, zarray: dict[str, Any], attrs: dict[str, Any], dims: list[str],
               index: tuple[int, ...]) -> np.ndarray:
        """The chunk's pixels as GDAL reads them from the source (clipped to the array)."""
        shape, chunks = zarray["shape"], zarray["chunks"]
        y_axis, x_axis = (1, 2) if len(index) == 3 or dims[-1] == "band" else (2, 3)
        y0, x0 = index[y_axis] * chunks[y_axis], index[x_axis] * chunks[x_axis]
        h = min(chunks[y_axis], shape[y_axis] - y0)
        w = min(chunks[x_axis], shape[x_axis] - x0)
        if attrs["chunkindex"].get("mask"):  # GDAL reads the 1-bit mask as 0/255
            return (self._band(url, attrs, 1).ReadAsArray(x0, y0, w, h) > 0).astype(np.uint8)[None]
        if len(index) == 3:
            return self._band(url, attrs, 1).ReadAsArray(x0, y0, w, h)[None]
        if dims[-1] == "band":
            bands = [self._band(url, attrs, b + 1).ReadAsArray(x0, y0, w, h) for b in range(shape[-1])]
            return np.stack(bands, axis=-1)[None]
        return self._band(url, attrs, index[1] + 1).ReadAsArray(x0, y0, w, h)[None, None]

    def bind(self, index: Path, meta: dict[str, Any]) -> None:
        """The time coordinate the index holds (each file's name must give its step's time)."""
        zattrs = meta.get(f"{self.time_dim}/.zattrs")
        if self.pattern is not None and self.pattern.time_formats and zattrs and "units" in zattrs:
            self.times = KerchunkIndex.open(index).inline_values(self.time_dim)
            self.units = zattrs["units"]

    def fill_value(self, url: str, zarray: dict[str, Any], attrs: dict[str, Any]) -> float:
        """The level's nodata as GDAL reads it from the file: 0 when it has none,
        or one its data type cannot hold (missing tiles then read as 0)."""
        band = self._band(url, attrs, 1)
        nodata = band.GetNoDataValue()
        dtype = band.ReadAsArray(0, 0, 1, 1).dtype  # the file's own sample type
        if nodata is None or (dtype.kind in "iu" and not (
                float(nodata).is_integer() and np.iinfo(dtype).min <= nodata <= np.iinfo(dtype).max)):
            return 0.0
        return float(nodata)

    def file_problem(self, url: str, name: str, attrs: dict[str, Any], dims: list[str],
                     index: tuple[int, ...]) -> str | None:
        """The file's name (through the recipe's pattern) gives the time of the
        chunk's step and the array's variable."""
        if self.pattern is None:
            return None
        match = self.pattern.regex.search(url)
        if match is None:
            return f"{url} does not match the recipe's pattern {self.pattern.text!r}"
        info = attrs["chunkindex"]
        variable = info.get("variant_of", name).rsplit("/", 1)[-1]  # levels live in ovr<f>/
        if info["overview_factor"] != 1:
            variable = variable.removesuffix(f"_ovr{info['overview_factor']}")
        if info.get("mask"):
            variable = variable.removesuffix("_mask")
        named = match.groupdict().get("variable")
        if named is not None and named != variable:
            return f"the file holds variable {named!r}, the array is {variable!r}"
        if self.times is None or self.time_dim not in dims:
            return None
        time = self.pattern.parse_time(match, url)
        step = index[dims.index(self.time_dim)]
        assert time is not None  # the pattern has time fields (bind)
        value = float(times_to_cf(np.array([np.datetime64(time, "us")]), self.units)[0])
        if not math.isclose(value, float(self.times[step]), rel_tol=0, abs_tol=1e-9):
            return (f"the file's name gives {self.time_dim} {value} {self.units}, the array's step {step} "
                    f"is {float(self.times[step])}")
        return None

    def cross_check(self, url: str, zarray: dict[str, Any], attrs: dict[str, Any], dims: list[str],
                    index: tuple[int, ...], expected: tuple[int, int]) -> str | None:
        """No second tile table for TIFF files."""
        return None
