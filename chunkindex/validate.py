"""Validate a written index with GDAL against the source files.

For every data array: GDAL opens `ZARR:"<index>"` (multidim API) and the
dimensions, shape, block size, dtype, scale/offset/nodata and SRS must be as
written. For a seeded sample of chunks (always the first and last file, the
edge chunks, a chunk with no data if any, every overview level):

* `GetRawBlockInfo` through the index gives the file, offset and size we
  wrote, and those equal the source's own tile table (GDAL's GTiff driver:
  `BLOCK_OFFSET_x_y`/`BLOCK_SIZE_x_y`; for NetCDF/HDF5, `GetRawBlockInfo` on
  the source variable);
* pixels read through the index equal pixels GDAL reads from the source
  (exact), where GDAL decodes the chain; elsewhere the chunk is decoded in
  Python with the recorded chain and compared with GDAL's read of the source;
* a second reader (fsspec ReferenceFileSystem + zarr-python) agrees.

Any mismatch fails validation with the file, chunk and expected vs got.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from chunkindex.codecs import CodecChain, decode_chunk
from chunkindex.kerchunk import read_kerchunk_metadata
from chunkindex.stores import gdal_path
from chunkindex.tables import read_parquet

log = logging.getLogger(__name__)


@dataclass
class Mismatch:
    array: str
    chunk: str
    file: str
    what: str
    expected: str
    got: str


@dataclass
class ArrayResult:
    array: str
    readers: list[str]
    gdal_opened: bool
    chunks_checked: int = 0
    refs_checked: int = 0
    pixels_checked_gdal: int = 0
    pixels_checked_python: int = 0
    pixels_checked_zarr: int = 0
    missing_chunks_checked: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class ValidationReport:
    index: str
    arrays: list[ArrayResult] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_json(self) -> str:
        return json.dumps({"index": self.index, "ok": self.ok, "arrays": [asdict(a) for a in self.arrays],
                           "mismatches": [asdict(m) for m in self.mismatches], "notes": self.notes}, indent=1)

    def summary(self) -> str:
        lines = [f"validation of {self.index}: {'OK' if self.ok else f'{len(self.mismatches)} MISMATCHES'}"]
        for a in self.arrays:
            lines.append(f"  {a.array}: {a.chunks_checked} chunks, refs {a.refs_checked}, pixels gdal "
                         f"{a.pixels_checked_gdal} / python {a.pixels_checked_python} / zarr "
                         f"{a.pixels_checked_zarr}, no-data chunks {a.missing_chunks_checked}; "
                         f"readers: {', '.join(a.readers) or 'none'}")
        for m in self.mismatches[:50]:
            lines.append(f"  MISMATCH {m.array} chunk {m.chunk} ({m.file}): {m.what}: expected {m.expected}, got {m.got}")
        return "\n".join(lines)


class ValidationFailed(AssertionError):
    """The index disagrees with its sources (the report says where)."""

    def __init__(self, message: str, report: ValidationReport | None = None) -> None:
        super().__init__(message)
        self.report = report


def _gdal() -> Any:
    from osgeo import gdal

    gdal.UseExceptions()
    return gdal


@dataclass(frozen=True)
class ChunkRef:
    number: int
    index: tuple[int, ...]
    url: str | None
    offset: int
    size: int


def _load_refs(index: Path, name: str, record_size: int, n_chunks: int, refs_json: dict[str, Any] | None,
               grid: tuple[int, ...]) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """(file code per chunk, -1 for none; the files; offset; size) of one array.

    Codes, not strings: an array may hold tens of millions of references."""
    import pyarrow.compute as pc

    codes = np.full(n_chunks, -1, np.int32)
    offsets = np.zeros(n_chunks, np.int64)
    sizes = np.zeros(n_chunks, np.int64)
    files: dict[str, int] = {}
    if refs_json is not None:
        prefix = name + "/"
        for key, ref in refs_json.items():
            if key.startswith(prefix) and not key.endswith((".zarray", ".zattrs")) and isinstance(ref, list):
                number = int(np.ravel_multi_index(tuple(int(p) for p in key[len(prefix):].split(".")), grid))
                codes[number] = files.setdefault(ref[0], len(files))
                offsets[number], sizes[number] = ref[1], ref[2]
        return codes, list(files), offsets, sizes
    for k in range(math.ceil(n_chunks / record_size)):
        part = index / name / f"refs.{k}.parq"
        if not part.exists():
            continue
        table = read_parquet(part, columns=["path", "offset", "size"], read_dictionary=["path"])
        start = k * record_size
        stop = start + table.num_rows
        paths = table["path"].combine_chunks()
        if not isinstance(paths, pa.DictionaryArray):
            paths = paths.dictionary_encode()
        mapping = np.array([files.setdefault(p, len(files)) for p in paths.dictionary.to_pylist()] + [-1], np.int32)
        local = pc.fill_null(paths.indices, len(paths.dictionary)).to_numpy()
        codes[start:stop] = mapping[local]
        offsets[start:stop] = table["offset"].to_numpy(zero_copy_only=False)
        sizes[start:stop] = table["size"].to_numpy(zero_copy_only=False)
    return codes, list(files), offsets, sizes


def sample_chunks(grid: tuple[int, ...], present: np.ndarray, count: int, seed: int,
                  time_axis: int | None, codes: np.ndarray | None = None) -> np.ndarray:
    """Chunk numbers to check: random ones plus the first/last step, the first
    and last step of every file (up to 20 files), the edges and a chunk with
    no data. Nothing proportional to the array is built but the inputs."""
    n = int(np.prod(grid)) if grid else 1
    rng = np.random.default_rng(seed)
    if not grid:
        return np.zeros(1, np.int64)
    chosen = set(np.unique(rng.integers(0, n, size=min(count, n))).tolist())

    def random_with(axis: int, value: int, how_many: int = 2) -> None:
        for _ in range(how_many):
            index = [int(rng.integers(0, g)) for g in grid]
            index[axis] = value
            chosen.add(int(np.ravel_multi_index(tuple(index), grid)))

    for axis in range(len(grid)):  # edge chunks: the last along each axis
        random_with(axis, grid[axis] - 1)
    if time_axis is not None:
        random_with(time_axis, 0)
        random_with(time_axis, grid[time_axis] - 1)
        if codes is not None:
            steps = np.moveaxis(codes.reshape(grid), time_axis, 0).reshape(grid[time_axis], -1)
            step_file = steps.max(axis=1)  # one file per step: its code (or -1)
            boundaries = np.flatnonzero(step_file[1:] != step_file[:-1]) + 1
            for t in rng.permutation(boundaries)[:20].tolist():
                random_with(time_axis, t - 1, 1)  # last step of one file
                random_with(time_axis, t, 1)      # first step of the next
    missing = np.flatnonzero(~present)
    if missing.size:
        chosen.update(rng.choice(missing, size=min(2, missing.size), replace=False).tolist())
    return np.array(sorted(chosen), dtype=np.int64)


SourceReader = Callable[[str, dict[str, Any], ChunkRef, tuple[slice, ...]], Any]


class TiffSource:
    """Source-side truth for COG arrays, through GDAL's GTiff driver."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def _dataset(self, url: str) -> Any:
        if url not in self._cache:
            self._cache[url] = _gdal().Open(gdal_path(url))
        return self._cache[url]

    def _band(self, url: str, attrs: dict[str, Any], band: int) -> Any:
        ds = self._dataset(url)
        b = ds.GetRasterBand(band)
        ifd = attrs["chunkindex"]["ifd"]
        if ifd == 0:
            return b
        factor = attrs["chunkindex"]["overview_factor"]
        for i in range(b.GetOverviewCount()):
            ov = b.GetOverview(i)
            if round(ds.RasterXSize / ov.XSize) == factor:
                return ov
        raise ValueError(f"{url}: no overview of factor {factor}")

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
        if list(b.GetBlockSize()) != [chunks[y_axis + 1], chunks[y_axis]]:
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
            across = -(-zarray["shape"][y_axis + 1] // zarray["chunks"][y_axis + 1])
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
        if len(index) == 3:
            return self._band(url, attrs, 1).ReadAsArray(x0, y0, w, h)[None]
        if dims[-1] == "band":
            bands = [self._band(url, attrs, b + 1).ReadAsArray(x0, y0, w, h) for b in range(shape[-1])]
            return np.stack(bands, axis=-1)[None]
        return self._band(url, attrs, index[1] + 1).ReadAsArray(x0, y0, w, h)[None, None]


class HdfSource:
    """Source-side truth for NetCDF4/HDF5 arrays.

    References are checked against HDF5's own lookup by chunk coordinate
    (h5py `get_chunk_info_by_coord`, a different path from the chunk walk),
    and against GDAL's `GetRawBlockInfo` on the source file wherever that is
    reliable: GDAL 3.13.3 looks chunks up by allocation order, so in a file
    with never-written chunks it reports the wrong chunk (noted, not failed).
    Pixels come from GDAL's multidim read of the source variable.
    """

    def __init__(self, recipe: Any) -> None:
        self.recipe = recipe
        self.concat = recipe.concat.dim
        self.global_values: np.ndarray | None = None
        self.notes: list[str] = []
        self._h5_read_noted: set[str] = set()
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}

    def bind(self, index: Path, meta: dict[str, Any]) -> None:
        from chunkindex.kerchunk import read_inline_array

        if f"{self.concat}/.zarray" in meta:
            self.global_values = read_inline_array(index, self.concat)

    def _h5(self, url: str) -> Any:
        from chunkindex.hdf import open_h5
        from chunkindex.stores import StoreSpec, open_store

        if url.startswith("/"):
            return open_h5(None, url, url)
        folder, name = url.rsplit("/", 1)
        return open_h5(open_store(StoreSpec(folder, dict(self.recipe.source.store_options))), name, url)

    def _entry(self, url: str, attrs: dict[str, Any]) -> dict[str, Any]:
        name = attrs["chunkindex"]["source_variable"]
        if (url, name) not in self._cache:
            gdal = _gdal()
            ds = gdal.OpenEx(gdal_path(url), gdal.OF_MULTIDIM_RASTER)
            root = ds.GetRootGroup()
            start = 0
            if self.global_values is not None and self.concat in [d.GetName() for d in root.OpenMDArray(name).GetDimensions()]:
                first = root.OpenMDArray(self.concat).ReadAsArray()[0]
                start = int(np.searchsorted(self.global_values, first))
            h5 = self._h5(url)
            dataset = h5[name]
            grid = int(np.prod([math.ceil(s / c) for s, c in zip(dataset.shape, dataset.chunks or dataset.shape)]))
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
            except Exception as h5_exc:
                chain = attrs["chunkindex"]["codec"]["description"]
                raise ValueError(f"{url}: neither GDAL ({exc or 'read failed'}) nor h5py ({h5_exc}) can read the "
                                 f"source values to compare with ({chain})") from None
            if url not in self._h5_read_noted:
                self._h5_read_noted.add(url)
                self.notes.append(f"{url}: GDAL cannot decode this HDF5 filter pipeline, so source values "
                                  "were read with h5py + hdf5plugin")
            return values


def _chunk_region(zarray: dict[str, Any], index: tuple[int, ...]) -> tuple[list[int], list[int]]:
    start = [i * c for i, c in zip(index, zarray["chunks"])]
    count = [min(c, s - st) for c, s, st in zip(zarray["chunks"], zarray["shape"], start)]
    return start, count


def _read_range(url: str, offset: int, size: int) -> bytes:
    gdal = _gdal()
    handle = gdal.VSIFOpenL(gdal_path(url), "rb")
    if handle is None:
        raise OSError(f"cannot open {url}")
    try:
        gdal.VSIFSeekL(handle, offset, 0)
        return bytes(gdal.VSIFReadL(1, size, handle))
    finally:
        gdal.VSIFCloseL(handle)


def _zarr_group(index: Path, sample_url: str, remote_options: dict[str, Any] | None) -> Any:
    """The index opened by the second reader: fsspec references + zarr-python."""
    import fsspec
    import imagecodecs.numcodecs
    import zarr
    from fsspec.implementations.reference import LazyReferenceMapper, ReferenceFileSystem
    from zarr.storage import FsspecStore

    imagecodecs.numcodecs.register_codecs(verbose=False)
    protocol = "file" if sample_url.startswith("/") else sample_url.split("://", 1)[0]
    if index.is_dir():
        # A few cached record files: each is 100,000 rows of Python strings.
        refs: Any = LazyReferenceMapper(str(index), fs=fsspec.filesystem("file"), engine="pyarrow", cache_size=4)
    else:
        refs = str(index)
    options = dict(remote_options or {})
    if protocol != "file":
        options["asynchronous"] = True  # must match the reference filesystem's mode
    fs = ReferenceFileSystem(refs, remote_protocol=protocol, remote_options=options, asynchronous=True)
    return zarr.open_group(store=FsspecStore(fs=fs, path="", read_only=True), mode="r", zarr_format=2)


def validate_index(
    index: str | Path,
    source: TiffSource | Any,
    sample_count: int,
    seed: int,
    second_reader: bool = True,
    time_dim: str | None = "time",
    remote_options: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ValidationReport:
    """Check the index at `index` against its sources; see the module docstring."""
    gdal = _gdal()
    index = Path(index)
    doc = read_kerchunk_metadata(index)
    meta = doc["metadata"]
    report = ValidationReport(index=str(index))
    if hasattr(source, "bind"):
        source.bind(index, meta)
    ds = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER)
    root = ds.GetRootGroup()
    group = None
    second_reader_tried = not second_reader
    names = sorted(k[: -len("/.zarray")] for k in meta if k.endswith("/.zarray"))
    # A `_refs_only` variant right after its array: they share one reference table.
    base_of = {n: meta.get(f"{n}/.zattrs", {}).get("chunkindex", {}).get("variant_of", n) for n in names}
    names.sort(key=lambda n: (base_of[n], n != base_of[n], n))
    loaded: tuple[str, Any] = ("", None)
    for name in names:
        zarray, attrs = meta[f"{name}/.zarray"], meta.get(f"{name}/.zattrs", {})
        info = attrs.get("chunkindex")
        if info is None:  # coordinates are checked through the data arrays
            continue
        dims = attrs["_ARRAY_DIMENSIONS"]
        chain = CodecChain(zarray["compressor"], tuple(zarray["filters"] or ()))
        true_chain = CodecChain(info["codec"]["compressor"], tuple(info["codec"]["filters"]),
                                python_decodable="zarr-python+imagecodecs" in info["codec"]["readers"])
        is_variant = "variant_of" in info
        result = ArrayResult(array=name, readers=[] if is_variant else true_chain.readers, gdal_opened=False)
        report.arrays.append(result)
        if progress:
            progress(name)
        arr = None
        try:
            arr = root.OpenMDArray(name)
            result.gdal_opened = arr is not None
        except RuntimeError as exc:
            if chain.gdal_decodable:
                report.mismatches.append(Mismatch(name, "-", str(index), "GDAL opens the array", "opened", str(exc)))
            else:
                result.notes.append(f"GDAL does not open it ({exc}); the _refs_only variant carries its references")
        grid = tuple(math.ceil(s / c) for s, c in zip(zarray["shape"], zarray["chunks"]))
        n_chunks = int(np.prod(grid))
        if arr is not None:
            _check_array_metadata(arr, name, zarray, attrs, dims, report)
        if info.get("inline_source"):  # a compact dataset carried inline: compare it whole
            url = info["inline_source"]
            if not second_reader_tried:
                second_reader_tried = True
                group = _zarr_group(index, url, remote_options)
            expected = source.pixels(url, zarray, attrs, dims, tuple(0 for _ in grid))
            result.chunks_checked += 1
            if arr is not None:
                _compare(report, name, "0", url, "inline values through GDAL", expected, arr.ReadAsArray())
                result.pixels_checked_gdal += 1
            if group is not None:
                _compare(report, name, "0", url, "inline values through zarr-python", expected, np.asarray(group[name][...]))
                result.pixels_checked_zarr += 1
            continue
        if loaded[0] != base_of[name]:
            loaded = ("", None)  # free the previous table first
            loaded = (base_of[name], _load_refs(index, name, doc["record_size"] or 0, n_chunks, doc.get("refs"), grid))
        codes, files, offsets, sizes = loaded[1]
        present = codes >= 0
        if not second_reader_tried and present.any():
            second_reader_tried = True
            try:
                group = _zarr_group(index, files[0], remote_options)
            except Exception as exc:  # report it; GDAL remains the reference reader
                report.mismatches.append(Mismatch("-", "-", str(index), "second reader opens the index",
                                                  "fsspec + zarr-python open it", f"{type(exc).__name__}: {exc}"))
        time_axis = dims.index(time_dim) if time_dim in dims else None
        for number in sample_chunks(grid, present, sample_count, seed, time_axis, codes):
            chunk_index = tuple(int(i) for i in np.unravel_index(number, grid))
            key = ".".join(map(str, chunk_index))
            url = files[codes[number]] if codes[number] >= 0 else None
            result.chunks_checked += 1
            start, count = _chunk_region(zarray, chunk_index)
            if url is None:
                result.missing_chunks_checked += 1
                _check_missing(arr, group, name, zarray, start, count, key, report, result)
                continue
            # References: index vs GDAL's view through the index vs the source's tile table.
            if arr is not None:
                block = arr.GetRawBlockInfo(list(chunk_index))
                got = (block.GetFilename(), block.GetOffset(), block.GetSize()) if block else None
                want = (gdal_path(url), int(offsets[number]), int(sizes[number]))
                if got != want:
                    report.mismatches.append(Mismatch(name, key, url, "GetRawBlockInfo through the index", str(want), str(got)))
            src_offset, src_size = source.tile_ref(url, zarray, attrs, dims, chunk_index)
            if (src_offset, src_size) != (int(offsets[number]), int(sizes[number])):
                report.mismatches.append(Mismatch(name, key, url, "offset/size vs the source's own table",
                                                  str((src_offset, src_size)), str((int(offsets[number]), int(sizes[number])))))
            if hasattr(source, "cross_check"):
                problem = source.cross_check(url, zarray, attrs, dims, chunk_index, (src_offset, src_size))
                if problem:
                    report.mismatches.append(Mismatch(name, key, url, "second source table", str((src_offset, src_size)), problem))
            result.refs_checked += 1
            if is_variant:
                continue  # references only: pixels through GDAL are not valid by design
            # Pixels.
            expected = source.pixels(url, zarray, attrs, dims, chunk_index)
            if arr is not None and chain.gdal_decodable:
                got_px = arr.ReadAsArray(array_start_idx=start, count=count)
                _compare(report, name, key, url, "pixels through GDAL (index)", expected, got_px)
                result.pixels_checked_gdal += 1
            elif true_chain.python_decodable:
                raw = _read_range(url, int(offsets[number]), int(sizes[number]))
                try:
                    decoded = decode_chunk(true_chain, raw, zarray["dtype"], tuple(zarray["chunks"]))
                except Exception as exc:
                    report.mismatches.append(Mismatch(name, key, url, "decoding with the recorded chain",
                                                      "a full chunk", f"{type(exc).__name__}: {exc}"))
                    continue
                region = decoded[tuple(slice(0, c) for c in count)]
                _compare(report, name, key, url, "pixels decoded with the recorded chain", expected, region)
                result.pixels_checked_python += 1
            if group is not None and true_chain.python_decodable:
                try:
                    got_z = group[name][tuple(slice(s, s + c) for s, c in zip(start, count))]
                except Exception as exc:
                    report.mismatches.append(Mismatch(name, key, url, "zarr-python read", "data", f"{type(exc).__name__}: {exc}"))
                else:
                    _compare(report, name, key, url, "pixels through fsspec + zarr-python", expected, np.asarray(got_z))
                    result.pixels_checked_zarr += 1
    report.notes.extend(getattr(source, "notes", []))
    return report


def _check_missing(arr: Any, group: Any, name: str, zarray: dict[str, Any], start: list[int], count: list[int],
                   key: str, report: ValidationReport, result: ArrayResult) -> None:
    fill = zarray["fill_value"]
    fill = np.nan if fill == "NaN" else (0 if fill is None else fill)
    expected = np.full(count, fill, dtype=np.dtype(zarray["dtype"]))
    if arr is not None and CodecChain(zarray["compressor"], tuple(zarray["filters"] or ())).gdal_decodable:
        got = arr.ReadAsArray(array_start_idx=start, count=count)
        _compare(report, name, key, "(no data)", "no-data chunk through GDAL reads the fill value", expected, got)
    if group is not None and "_refs_only" not in name:
        try:
            got_z = np.asarray(group[name][tuple(slice(s, s + c) for s, c in zip(start, count))])
        except Exception as exc:
            report.mismatches.append(Mismatch(name, key, "(no data)", "zarr-python read", "fill value", f"{type(exc).__name__}: {exc}"))
        else:
            _compare(report, name, key, "(no data)", "no-data chunk through zarr-python reads the fill value", expected, got_z)


def _compare(report: ValidationReport, name: str, key: str, url: str, what: str, expected: np.ndarray,
             got: np.ndarray | None) -> None:
    if got is None:
        report.mismatches.append(Mismatch(name, key, url, what, f"array {expected.shape}", "nothing"))
        return
    got = np.asarray(got)
    if got.shape != expected.shape:
        got = got.reshape(expected.shape) if got.size == expected.size else got
    if got.shape != expected.shape or not np.array_equal(got, expected, equal_nan=expected.dtype.kind == "f"):
        diff = "shape " + str(got.shape) if got.shape != expected.shape else \
            f"{int((got != expected).sum())} of {expected.size} values differ (first got {got.ravel()[np.argmax((got != expected).ravel())]})"
        report.mismatches.append(Mismatch(name, key, url, what, f"{expected.dtype} {expected.shape} as in the source", diff))


def _check_array_metadata(arr: Any, name: str, zarray: dict[str, Any], attrs: dict[str, Any], dims: list[str],
                          report: ValidationReport) -> None:
    def expect(what: str, expected: Any, got: Any) -> None:
        if expected != got:
            report.mismatches.append(Mismatch(name, "-", "(metadata)", what, str(expected), str(got)))

    expect("dimension names", list(dims), [d.GetName() for d in arr.GetDimensions()])
    expect("shape", list(zarray["shape"]), [d.GetSize() for d in arr.GetDimensions()])
    expect("block size", list(zarray["chunks"]), list(arr.GetBlockSize()))
    gdal = _gdal()
    expected_type = gdal.GetDataTypeByName({"i1": "Int8", "u1": "Byte", "i2": "Int16", "u2": "UInt16", "i4": "Int32",
                                            "u4": "UInt32", "i8": "Int64", "u8": "UInt64", "f4": "Float32",
                                            "f8": "Float64"}[zarray["dtype"][1:]])
    expect("data type", gdal.GetDataTypeName(expected_type), gdal.GetDataTypeName(arr.GetDataType().GetNumericDataType()))
    if "scale_factor" in attrs:
        expect("scale", attrs["scale_factor"], arr.GetScale())
    if "add_offset" in attrs:
        expect("offset", attrs["add_offset"], arr.GetOffset())
    if "_FillValue" in attrs:
        want, got = float(attrs["_FillValue"]), arr.GetNoDataValueAsDouble()
        if not (math.isnan(want) and got is not None and math.isnan(got)):
            expect("nodata", want, got)
    crs = attrs.get("_CRS", {}).get("url")
    if crs:
        srs = arr.GetSpatialRef()
        got = f"EPSG:{srs.GetAuthorityCode(None)}" if srs is not None else None
        expect("SRS", "EPSG:" + crs.rsplit("/", 1)[1], got)
