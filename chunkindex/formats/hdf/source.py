"""Source-side truth of NetCDF4/HDF5 arrays for validation: HDF5's own
chunk lookup, GDAL's GetRawBlockInfo and pixels read from the source files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from chunkindex.formats.hdf.headers import open_h5
from chunkindex.indexes.kerchunk import KerchunkIndex
from chunkindex.model import ChunkGrid
from chunkindex.recipe import Recipe
from chunkindex.sources.stores import StoreSpec, gdal_module, gdal_path, is_local, open_store

OPEN_FILES = 16  # source files kept open while validating (least recently used closed first)


class HdfSource:
    """Source-side truth for NetCDF4/HDF5 arrays.

    References are checked against HDF5's own lookup by chunk coordinate
    (h5py `get_chunk_info_by_coord`, a different path from the chunk walk),
    and against GDAL's `GetRawBlockInfo` on the source file wherever that is
    reliable: GDAL 3.13.3 looks chunks up by allocation order, so in a file
    with never-written chunks it reports the wrong chunk (noted, not failed).
    Pixels come from GDAL's multidim read of the source variable.
    """

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        self.concat = recipe.concat.dim
        self.global_values: np.ndarray | None = None
        self.notes: list[str] = []
        self._h5_read_noted: set[str] = set()
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}

    def bind(self, index: Path, meta: dict[str, Any]) -> None:
        if f"{self.concat}/.zarray" in meta:
            self.global_values = KerchunkIndex.open(index).inline_values(self.concat)

    def _h5(self, url: str) -> Any:
        if is_local(url):
            return open_h5(None, gdal_path(url), url)
        folder, name = url.rsplit("/", 1)
        return open_h5(open_store(StoreSpec(folder, dict(self.recipe.source.store_options))), name, url)

    def _entry(self, url: str, attrs: dict[str, Any]) -> dict[str, Any]:
        name = attrs["chunkindex"]["source_variable"]
        if (url, name) in self._cache:
            self._cache[(url, name)] = self._cache.pop((url, name))  # most recently used last
        else:
            # A bounded set of open files (a sample touches ~100 per array).
            while len(self._cache) >= OPEN_FILES:
                evicted = self._cache.pop(next(iter(self._cache)))
                evicted["h5"].close()
            gdal = gdal_module()
            ds = gdal.OpenEx(gdal_path(url), gdal.OF_MULTIDIM_RASTER)
            root = ds.GetRootGroup()
            start = 0
            if self.global_values is not None and self.concat in [d.GetName() for d in root.OpenMDArray(name).GetDimensions()]:
                first = root.OpenMDArray(self.concat).ReadAsArray()[0]
                start = int(np.searchsorted(self.global_values, first))
            h5 = self._h5(url)
            dataset = h5[name]
            grid = ChunkGrid.of(dataset.shape, dataset.chunks or dataset.shape).n_chunks
            complete = dataset.chunks is None or dataset.id.get_num_chunks() == grid
            if not complete:
                self.notes.append(f"{url}: {grid - dataset.id.get_num_chunks()} of {grid} chunks of {name} were never "
                                  "written; GDAL's GetRawBlockInfo on such a file reports the wrong chunks "
                                  "(GDAL 3.13.3), so HDF5's lookup by coordinate is the reference there")
            self._cache[(url, name)] = {"ds": ds, "array": root.OpenMDArray(name), "start": start,
                                        "h5": h5, "dataset": dataset, "gdal_reliable": complete}
        return self._cache[(url, name)]

    def _local(self, url: str, zarray: dict[str, Any], attrs: dict[str, Any], dims: list[str],
               index: tuple[int, ...]) -> tuple[dict[str, Any], list[int]]:
        entry = self._entry(url, attrs)
        local = list(index)
        if len(local) == entry["dataset"].ndim + 1 and dims and dims[0] == self.concat:
            return entry, local[1:]  # a granule stacked along the concat dimension: not in the file
        if self.concat in dims:
            axis = dims.index(self.concat)
            local[axis] -= entry["start"] // zarray["chunks"][axis]
        return entry, local

    def tile_ref(self, url: str, zarray: dict[str, Any], attrs: dict[str, Any], dims: list[str],
                 index: tuple[int, ...]) -> tuple[int, int]:
        entry, local = self._local(url, zarray, attrs, dims, index)
        dataset = entry["dataset"]
        if dataset.chunks is None:
            return int(dataset.id.get_offset() or 0), int(dataset.id.get_storage_size())
        info = dataset.id.get_chunk_info_by_coord(tuple(i * c for i, c in zip(local, dataset.chunks)))
        return (int(info.byte_offset), int(info.size)) if info.byte_offset is not None else (0, 0)

    def fill_value(self, url: str, zarray: dict[str, Any], attrs: dict[str, Any]) -> float:
        """The variable's `_FillValue` attribute, else HDF5's dataset fill value, else 0."""
        dataset = self._entry(url, attrs)["dataset"]
        fill = dataset.attrs.get("_FillValue", dataset.fillvalue)
        fill = np.asarray(fill).ravel()[0] if fill is not None else 0
        return float(fill)

    def file_problem(self, url: str, name: str, attrs: dict[str, Any], dims: list[str],
                     index: tuple[int, ...]) -> str | None:
        """Nothing beyond position: each file's chunks are located by its own
        concat coordinate, so a chunk that names another file fails its offset check."""
        return None

    def cross_check(self, url: str, zarray: dict[str, Any], attrs: dict[str, Any], dims: list[str],
                    index: tuple[int, ...], expected: tuple[int, int]) -> str | None:
        """GDAL's GetRawBlockInfo on the source file, where it is reliable."""
        entry, local = self._local(url, zarray, attrs, dims, index)
        if not entry["gdal_reliable"]:
            return None
        info = entry["array"].GetRawBlockInfo(local)
        got = (int(info.GetOffset()), int(info.GetSize())) if info is not None else (0, 0)
        return None if got == expected else f"GDAL GetRawBlockInfo on the source says {got}"

    def pixels(self, url: str, zarray: dict[str, Any], attrs: dict[str, Any], dims: list[str],
               index: tuple[int, ...]) -> np.ndarray:
        entry, local = self._local(url, zarray, attrs, dims, index)
        if len(local) < len(index):  # stacked granule: read the file's chunk, give it the stacking axis
            return self.pixels(url, {**zarray, "chunks": zarray["chunks"][1:]}, attrs, dims[1:],
                               tuple(index[1:]))[None]
        arr = entry["array"]
        chunks = zarray["chunks"]
        begin = [i * c for i, c in zip(local, chunks)]
        sizes = [d.GetSize() for d in arr.GetDimensions()]
        count = [min(c, s - b) for c, s, b in zip(chunks, sizes, begin)]
        try:
            return arr.ReadAsArray(array_start_idx=begin, count=count)
        except RuntimeError as exc:
            # GDAL's HDF5 library lacks filter plugins (zstd, lz4, blosc,
            # bitshuffle); h5py reads the source through hdf5plugin's.
            region = tuple(slice(b, b + c) for b, c in zip(begin, count))
            try:
                import hdf5plugin  # noqa: F401  registers the HDF5 filter plugins

                values = entry["dataset"][region]
            except Exception as h5_exc:  # noqa: BLE001  any failure: named with GDAL's
                chain = attrs["chunkindex"]["codec"]["description"]
                raise ValueError(f"{url}: neither GDAL ({exc or 'read failed'}) nor h5py ({h5_exc}) can read the "
                                 f"source values to compare with ({chain})") from None
            if url not in self._h5_read_noted:
                self._h5_read_noted.add(url)
                self.notes.append(f"{url}: GDAL cannot decode this HDF5 filter pipeline, so source values "
                                  "were read with h5py + hdf5plugin")
            return values
