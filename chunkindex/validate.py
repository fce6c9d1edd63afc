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

from chunkindex.codecs import REFS_ONLY_COMPRESSOR, CodecChain, decode_chunk
from chunkindex.formats import SourceTruth
from chunkindex.indexes.kerchunk import ArrayReferences, KerchunkIndex
from chunkindex.model import ChunkGrid
from chunkindex.sources.stores import gdal_module, gdal_path, url_protocol

log = logging.getLogger(__name__)

# imagecodecs function naming the library behind each image codec.
IMAGE_LIBRARIES = {"imagecodecs_jpeg": "jpeg8_version", "imagecodecs_webp": "webp_version",
                   "imagecodecs_lerc": "lerc_version", "imagecodecs_jpegxl": "jpegxl_version",
                   "imagecodecs_jpeg2k": "jpeg2k_version"}
# Largest difference accepted between a JPEG tile decoded by imagecodecs
# (its own libjpeg-turbo 3.1) and GDAL's read of the source (Debian's
# libjpeg-turbo 2.1 through libtiff): measured 0 on every JPEG file here
# (4 real-world COGs and 7 synthetic files: grey, YCbCr 4:2:0, RGB, band-separate,
# shared and per-tile tables), so exact.
JPEG_TOLERANCE = 0


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
    decoders: list[str] = field(default_factory=list)  # who decoded the pixels compared
    max_abs_difference: float = 0.0
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
                         f"readers: {', '.join(a.readers) or 'none'}; decoded by: "
                         f"{'; '.join(a.decoders) or 'nobody'}"
                         + (f"; max difference {a.max_abs_difference:g}" if a.max_abs_difference else ""))
        for m in self.mismatches[:50]:
            lines.append(f"  MISMATCH {m.array} chunk {m.chunk} ({m.file}): {m.what}: expected {m.expected}, got {m.got}")
        return "\n".join(lines)


class ValidationFailed(AssertionError):
    """The index disagrees with its sources (the report says where)."""

    def __init__(self, message: str, report: ValidationReport | None = None) -> None:
        super().__init__(message)
        self.report = report


def sample_chunks(grid: tuple[int, ...], present: np.ndarray, count: int, seed: int,
                  time_axis: int | None, codes: np.ndarray | None = None) -> np.ndarray:
    """Chunk numbers to check (see sample_chunk_numbers), from an array's
    whole presence mask and file codes (one value per chunk)."""
    step_file = None
    if grid and time_axis is not None and codes is not None:
        steps = np.moveaxis(codes.reshape(grid), time_axis, 0).reshape(grid[time_axis], -1)
        step_file = steps.max(axis=1)  # one file per step: its code (or -1)
    missing = np.flatnonzero(~present)
    return sample_chunk_numbers(grid, count, seed, time_axis, step_file, int(missing.size),
                                lambda ranks: missing[ranks])


def sample_chunk_numbers(grid: tuple[int, ...], count: int, seed: int, time_axis: int | None,
                         step_file: np.ndarray | None, n_missing: int,
                         missing_at: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Chunk numbers to check: random ones plus the first/last step, the first
    and last step of every file (up to 20 files), the edges and a chunk with
    no data. Nothing proportional to the array is needed: `step_file` has one
    file code per step of the time axis (the largest, -1 for none), and
    `missing_at(ranks)` gives the chunk numbers of the `ranks`-th chunks with
    no data (of `n_missing`, in chunk order)."""
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
        if step_file is not None:
            boundaries = np.flatnonzero(step_file[1:] != step_file[:-1]) + 1
            for t in rng.permutation(boundaries)[:20].tolist():
                random_with(time_axis, t - 1, 1)  # last step of one file
                random_with(time_axis, t, 1)      # first step of the next
    if n_missing:
        # The same draw as rng.choice(missing, ...) on the whole list of numbers.
        ranks = rng.choice(n_missing, size=min(2, n_missing), replace=False)
        chosen.update(int(v) for v in missing_at(np.asarray(ranks, np.int64)))
    return np.array(sorted(chosen), dtype=np.int64)


class ReferenceSample:
    """What validating one array needs of its references, gathered block by
    block (a record file at a time) so that memory does not grow with the
    archive: the files, per step of the time axis the first and the largest
    file code, the chunks with no data per block, and the references of the
    sampled chunks only (`fetch`). Replaces holding every reference of the
    array (20 bytes a chunk: 4.4 GB for GHRSST x10's 221 M full-resolution
    chunks)."""

    def __init__(self, kerchunk: KerchunkIndex, name: str, time_axis: int | None) -> None:
        self.kerchunk, self.name, self.time_axis = kerchunk, name, time_axis
        self.grid = kerchunk.grid(name).counts
        self.n_chunks = int(np.prod(self.grid)) if self.grid else 1
        self._codes_of: dict[str, int] = {}
        self._files: list[str] | None = None
        self._whole: ArrayReferences | None = None
        if kerchunk.json_refs is not None:  # a JSON index is small and in memory already
            self._whole = kerchunk.references(name)
            self._codes_of = {f: i for i, f in enumerate(self._whole.files)}
            self.block_rows = max(self.n_chunks, 1)
        else:
            self.block_rows = int(kerchunk.record_size or self.n_chunks or 1)
        self.n_blocks = math.ceil(self.n_chunks / self.block_rows)
        steps = self.grid[time_axis] if time_axis is not None and self.grid else 0
        self.step_first = np.full(steps, -1, np.int64)   # code of a step's first chunk with a file
        self.step_file = np.full(steps, -1, np.int64)    # largest code of a step (file boundaries)
        self.missing_per_block = np.zeros(self.n_blocks, np.int64)
        self.present = 0
        self.first_code = -1
        self._sampled: dict[int, tuple[int, int, int]] = {}
        inner = int(np.prod(self.grid[time_axis + 1:])) if time_axis is not None else 1
        for k in range(self.n_blocks):
            codes, _, _ = self._block(k, with_ranges=False)
            has = codes >= 0
            found = int(has.sum())
            self.missing_per_block[k] = codes.size - found
            if not found:
                continue
            self.present += found
            where = np.flatnonzero(has)
            if self.first_code < 0:
                self.first_code = int(codes[where[0]])
            if steps:
                step = ((k * self.block_rows + where) // inner) % steps
                if step.size and (step[1:] >= step[:-1]).all():  # time-first: steps in runs (fast path)
                    starts = np.concatenate([[0], np.flatnonzero(step[1:] != step[:-1]) + 1])
                    runs = step[starts]
                    self.step_file[runs] = np.maximum(self.step_file[runs],
                                                      np.maximum.reduceat(codes[where], starts))
                else:
                    np.maximum.at(self.step_file, step, codes[where])
                unique, first = np.unique(step, return_index=True)
                unset = self.step_first[unique] < 0
                self.step_first[unique[unset]] = codes[where[first[unset]]]

    @property
    def files(self) -> list[str]:
        """Every referenced file, by code (first appearance in chunk order)."""
        if self._files is None:  # built once: the checks ask for it per chunk
            self._files = list(self._codes_of)
        return self._files

    @property
    def n_missing(self) -> int:
        return int(self.missing_per_block.sum())

    def _block(self, k: int, with_ranges: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(codes, offsets, sizes) of block `k` (its rows past a short or
        absent record file: code -1)."""
        start = k * self.block_rows
        rows = min(self.block_rows, self.n_chunks - start)
        if self._whole is not None:
            w = self._whole
            return w.codes[start:start + rows], w.offsets[start:start + rows], w.sizes[start:start + rows]
        import pyarrow as pa
        import pyarrow.compute as pc

        codes = np.full(rows, -1, np.int32)
        offsets = np.zeros(rows, np.int64) if with_ranges else None
        sizes = np.zeros(rows, np.int64) if with_ranges else None
        if not self.kerchunk.record_file(self.name, k).exists():
            return codes, offsets, sizes
        table = self.kerchunk.read_record(self.name, k, columns=["path", "offset", "size"] if with_ranges
                                          else ["path"], read_dictionary=["path"])
        paths = table["path"].combine_chunks()
        if not isinstance(paths, pa.DictionaryArray):
            paths = paths.dictionary_encode()
        known = len(self._codes_of)
        mapping = np.array([self._codes_of.setdefault(p, len(self._codes_of))
                            for p in paths.dictionary.to_pylist()] + [-1], np.int32)
        if len(self._codes_of) > known:
            self._files = None  # new files: the list is rebuilt when next asked for
        n = min(table.num_rows, rows)
        codes[:n] = mapping[pc.fill_null(paths.indices, len(paths.dictionary)).to_numpy()][:n]
        if with_ranges:
            assert offsets is not None and sizes is not None
            # A row without a file has null offset and size: 0, as a missing chunk.
            offsets[:n] = pc.fill_null(table["offset"], 0).to_numpy(zero_copy_only=False)[:n]
            sizes[:n] = pc.fill_null(table["size"], 0).to_numpy(zero_copy_only=False)[:n]
        return codes, offsets, sizes

    def missing_at(self, ranks: np.ndarray) -> np.ndarray:
        """Chunk numbers of the `ranks`-th chunks with no data."""
        before = np.concatenate([[0], np.cumsum(self.missing_per_block)])
        out = []
        for rank in ranks.tolist():
            k = int(np.searchsorted(before, rank, side="right") - 1)
            codes, _, _ = self._block(k, with_ranges=False)
            out.append(k * self.block_rows + int(np.flatnonzero(codes < 0)[rank - before[k]]))
        return np.array(out, np.int64)

    def sample(self, count: int, seed: int) -> np.ndarray:
        """The chunk numbers to check (sample_chunk_numbers), their references fetched."""
        numbers = sample_chunk_numbers(self.grid, count, seed, self.time_axis,
                                       self.step_file if self.time_axis is not None else None,
                                       self.n_missing, self.missing_at)
        self.fetch(numbers)
        return numbers

    def fetch(self, numbers: np.ndarray) -> None:
        """Read the references of chunks `numbers` (one record file at a time)."""
        wanted = [int(n) for n in numbers.tolist() if int(n) not in self._sampled]
        for k in sorted({n // self.block_rows for n in wanted}):
            codes, offsets, sizes = self._block(k, with_ranges=True)
            assert offsets is not None and sizes is not None
            for n in wanted:
                if n // self.block_rows == k:
                    i = n - k * self.block_rows
                    self._sampled[n] = (int(codes[i]), int(offsets[i]), int(sizes[i]))

    def ref(self, number: int) -> tuple[int, int, int]:
        """(file code or -1, offset, size) of a fetched chunk."""
        return self._sampled[number]

    def file_of_step(self, step: int | None) -> int:
        """Code of the first chunk with a file on time step `step` (any step: None), or -1."""
        return self.first_code if step is None or not self.step_first.size else int(self.step_first[step])


def _read_range(url: str, offset: int, size: int) -> bytes:
    gdal = gdal_module()
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
    protocol = url_protocol(sample_url)
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


@dataclass
class _ArrayCheck:
    """One data array of the index under validation, as the checks see it."""

    name: str
    zarray: dict[str, Any]
    attrs: dict[str, Any]
    dims: list[str]
    chain: CodecChain         # the chain GDAL sees (.zarray)
    true_chain: CodecChain    # the source's own chain (attribute chunkindex.codec)
    is_variant: bool          # a references-only variant (`refs_only/<name>`)
    result: ArrayResult
    arr: Any = None           # GDAL's MDArray through the index, when it opens

    @property
    def grid(self) -> ChunkGrid:
        return ChunkGrid.from_zarray(self.zarray)


class _SecondReader:
    """fsspec ReferenceFileSystem + zarr-python over the index, opened once,
    on the first array that has a file to point it at."""

    def __init__(self, index: Path, remote_options: dict[str, Any] | None, enabled: bool) -> None:
        self.index, self.remote_options = index, remote_options
        self.tried = not enabled
        self.group: Any = None

    def open_for_inline(self, url: str) -> None:
        if not self.tried:
            self.tried = True
            self.group = _zarr_group(self.index, url, self.remote_options)

    def open(self, references: ReferenceSample) -> list[Mismatch]:
        if self.tried or not references.present:
            return []
        self.tried = True
        try:
            self.group = _zarr_group(self.index, references.files[0], self.remote_options)
        except Exception as exc:  # noqa: BLE001  report it; GDAL remains the reference reader
            return [Mismatch("-", "-", str(self.index), "second reader opens the index",
                             "fsspec + zarr-python open it", f"{type(exc).__name__}: {exc}")]
        return []


def validate_index(
    index: str | Path,
    source: SourceTruth,
    sample_count: int,
    seed: int,
    second_reader: bool = True,
    time_dim: str | None = "time",
    remote_options: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ValidationReport:
    """Check the index at `index` against its sources; see the module docstring."""
    gdal = gdal_module()
    index = Path(index)
    kerchunk = KerchunkIndex.open(index)
    meta = kerchunk.metadata
    report = ValidationReport(index=str(index))
    source.bind(index, meta)
    ds = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER)
    root = ds.GetRootGroup()
    reader = _SecondReader(index, remote_options, second_reader)
    names = kerchunk.array_names
    # A references-only variant right after its array: they share one reference table.
    base_of = {n: kerchunk.zattrs(n).get("chunkindex", {}).get("variant_of", n) for n in names}
    names.sort(key=lambda n: (base_of[n], n != base_of[n], n))
    loaded: tuple[tuple[str, int | None], ReferenceSample | None] = (("", None), None)
    for name in names:
        check = _array_check(kerchunk, name)
        if check is None:  # coordinates are checked through the data arrays
            continue
        report.arrays.append(check.result)
        if progress:
            progress(name)
        report.mismatches.extend(_open_through_gdal(root, check, index))
        if check.arr is not None:
            report.mismatches.extend(check_array_metadata(check.arr, name, check.zarray, check.attrs, check.dims))
        if check.attrs["chunkindex"].get("inline_source"):
            report.mismatches.extend(check_inline(check, source, reader))
            continue
        time_axis = check.dims.index(time_dim) if time_dim in check.dims else None
        if loaded[0] != (base_of[name], time_axis):
            loaded = (("", None), None)  # free the previous one first
            loaded = ((base_of[name], time_axis), ReferenceSample(kerchunk, name, time_axis))
        references = loaded[1]
        assert references is not None
        report.mismatches.extend(reader.open(references))
        report.mismatches.extend(_guarded(check, "-", references.files[0] if references.files else "-",
                                          "fill value vs the source's",
                                          lambda check=check, references=references:
                                          check_fill_value(check, source, references)))
        grid = check.grid
        for number in references.sample(sample_count, seed):
            report.mismatches.extend(check_chunk(check, grid.index(int(number)), references, source,
                                                 reader.group, time_axis))
    report.notes.extend(source.notes)
    return report


def _array_check(kerchunk: KerchunkIndex, name: str) -> _ArrayCheck | None:
    """What the checks need of data array `name` (None for a coordinate)."""
    zarray, attrs = kerchunk.zarray(name), kerchunk.zattrs(name)
    info = attrs.get("chunkindex")
    if info is None:
        return None
    true_chain = CodecChain(info["codec"]["compressor"], tuple(info["codec"]["filters"]),
                            python_decodable="zarr-python+imagecodecs" in info["codec"]["readers"])
    is_variant = "variant_of" in info
    result = ArrayResult(array=name, readers=[] if is_variant else true_chain.readers, gdal_opened=False)
    if not is_variant and not true_chain.readers:
        result.notes.append(f"no reader here decodes {info['codec']['description']}: references checked only")
    return _ArrayCheck(name=name, zarray=zarray, attrs=attrs, dims=attrs["_ARRAY_DIMENSIONS"],
                       chain=CodecChain(zarray["compressor"], tuple(zarray["filters"] or ())),
                       true_chain=true_chain, is_variant=is_variant,
                       result=result)


def _open_through_gdal(root: Any, check: _ArrayCheck, index: Path) -> list[Mismatch]:
    """GDAL opens every array it can decode (the others are noted)."""
    try:
        check.arr = root.OpenMDArrayFromFullname("/" + check.name)
        check.result.gdal_opened = check.arr is not None
    except RuntimeError as exc:
        if check.chain.gdal_decodable:
            return [Mismatch(check.name, "-", str(index), "GDAL opens the array", "opened", str(exc))]
        check.result.notes.append(f"GDAL does not open it ({exc}); its references-only variant carries its references")
    return []


def check_inline(check: _ArrayCheck, source: SourceTruth, reader: _SecondReader) -> list[Mismatch]:
    """A compact dataset carried inline equals the source's values, whole."""
    url = check.attrs["chunkindex"]["inline_source"]
    reader.open_for_inline(url)
    found: list[Mismatch] = []
    expected = source.pixels(url, check.zarray, check.attrs, check.dims, tuple(0 for _ in check.grid.counts))
    check.result.chunks_checked += 1
    if check.arr is not None:
        found += _compare(check.name, "0", url, "inline values through GDAL", expected, check.arr.ReadAsArray())
        check.result.pixels_checked_gdal += 1
    if reader.group is not None:
        found += _compare(check.name, "0", url, "inline values through zarr-python", expected,
                          np.asarray(reader.group[check.name][...]))
        check.result.pixels_checked_zarr += 1
    return found


def check_chunk(check: _ArrayCheck, chunk_index: tuple[int, ...], references: ReferenceSample,
                source: SourceTruth, group: Any, time_axis: int | None = None) -> list[Mismatch]:
    """One sampled chunk: its references, then its values through every reader."""
    number = check.grid.number(chunk_index)
    key = ".".join(map(str, chunk_index))
    code, offset, size = references.ref(number)
    check.result.chunks_checked += 1
    start, count = check.grid.region(chunk_index)
    if code < 0:
        check.result.missing_chunks_checked += 1
        return (_guarded(check, key, "(no data)", "a chunk with no reference",
                         lambda: check_no_data_in_source(check, source, references, chunk_index, key, time_axis))
                + _guarded(check, key, "(no data)", "reading the chunk with no data",
                           lambda: check_missing(check, group, start, count, key)))
    url = references.files[code]
    found = _guarded(check, key, url, "reading the source's chunk table",
                     lambda: check_references(check, source, url, chunk_index, key, offset, size))
    problem = source.file_problem(url, check.name, check.attrs, check.dims, chunk_index)
    if problem:
        found.append(Mismatch(check.name, key, url, "the file of the chunk", "the file of its coordinate", problem))
    check.result.refs_checked += 1
    if check.is_variant:
        # References only: a pixel read must fail, never return values.
        if check.arr is not None and _read_succeeds(check.arr, start, count):
            found.append(Mismatch(check.name, key, url, "a pixel read of a references-only array", "an error",
                                  "values"))
        return found
    return found + _guarded(check, key, url, "reading the chunk",
                            lambda: check_pixels(check, source, group, url, chunk_index, key, offset, size, start,
                                                 count))


def _guarded(check: _ArrayCheck, key: str, url: str, what: str,
             run: Callable[[], list[Mismatch]]) -> list[Mismatch]:
    """The mismatches `run` finds; a failure to read or decode (GDAL's
    RuntimeError, a codec's error, a missing file) is itself a mismatch
    naming the array, the chunk and the file, never an exception."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001  whatever fails, validation goes on and names it
        return [Mismatch(check.name, key, url, what, "readable and decodable", f"{type(exc).__name__}: {exc}")]


def check_no_data_in_source(check: _ArrayCheck, source: SourceTruth, references: ReferenceSample,
                            chunk_index: tuple[int, ...], key: str, time_axis: int | None) -> list[Mismatch]:
    """A chunk the index says has no data has none in its source file either.

    The file is the one the index names for the chunk's neighbours along
    the same step of the concatenation axis (any chunk, for one file); when
    none has a file, the whole step is missing and there is nothing to ask.
    """
    code = references.file_of_step(chunk_index[time_axis] if time_axis is not None else None)
    if code < 0:
        return []
    url = references.files[code]
    offset, size = source.tile_ref(url, check.zarray, check.attrs, check.dims, chunk_index)
    if size:
        return [Mismatch(check.name, key, url, "a chunk with no reference", "no data in the source file",
                         f"the source has {size} bytes at offset {offset}")]
    return []


def check_fill_value(check: _ArrayCheck, source: SourceTruth, references: ReferenceSample) -> list[Mismatch]:
    """The index's fill value is the source's (what chunks with no data read as)."""
    if not references.files:
        return []
    url = references.files[references.first_code] if references.first_code >= 0 else references.files[0]
    want = source.fill_value(url, check.zarray, check.attrs)
    got = check.zarray["fill_value"]
    got = float("nan") if got == "NaN" else (0.0 if got is None else float(got))
    if want == got or (math.isnan(want) and math.isnan(got)):
        return []
    return [Mismatch(check.name, "-", url, "fill value vs the source's", str(want), str(got))]


def check_references(check: _ArrayCheck, source: SourceTruth, url: str, chunk_index: tuple[int, ...], key: str,
                     offset: int, size: int) -> list[Mismatch]:
    """Index vs GDAL's view through the index vs the source's own chunk table(s)."""
    found: list[Mismatch] = []
    if check.arr is not None:
        block = check.arr.GetRawBlockInfo(list(chunk_index))
        got = (block.GetFilename(), block.GetOffset(), block.GetSize()) if block else None
        want = (gdal_path(url), offset, size)
        if got != want:
            found.append(Mismatch(check.name, key, url, "GetRawBlockInfo through the index", str(want), str(got)))
    src_offset, src_size = source.tile_ref(url, check.zarray, check.attrs, check.dims, chunk_index)
    if (src_offset, src_size) != (offset, size):
        found.append(Mismatch(check.name, key, url, "offset/size vs the source's own table",
                              str((src_offset, src_size)), str((offset, size))))
    problem = source.cross_check(url, check.zarray, check.attrs, check.dims, chunk_index, (src_offset, src_size))
    if problem:
        found.append(Mismatch(check.name, key, url, "second source table", str((src_offset, src_size)), problem))
    return found


def check_pixels(check: _ArrayCheck, source: SourceTruth, group: Any, url: str, chunk_index: tuple[int, ...],
                 key: str, offset: int, size: int, start: list[int], count: list[int]) -> list[Mismatch]:
    """The chunk's values through GDAL (or decoded with the recorded chain)
    and through zarr-python equal the source's."""
    name, result = check.name, check.result
    found: list[Mismatch] = []
    expected = source.pixels(url, check.zarray, check.attrs, check.dims, chunk_index)
    written = np.dtype(check.zarray["dtype"])
    if written.newbyteorder("=") != expected.dtype.newbyteorder("="):
        return found + [Mismatch(name, key, url, "data type vs the source's", str(expected.dtype), str(written))]
    tolerance = decode_tolerance(check.true_chain)
    if check.arr is not None and check.chain.gdal_decodable:
        got_px = check.arr.ReadAsArray(array_start_idx=start, count=count)
        found += _compare(name, key, url, "pixels through GDAL (index)", expected, got_px, 0, result)
        result.pixels_checked_gdal += 1
        _add_decoder(result, f"GDAL {gdal_module().__version__} (ZARR: driver)")
    elif check.true_chain.python_decodable:
        raw = _read_range(url, offset, size)
        try:
            decoded = decode_chunk(check.true_chain, raw, check.zarray["dtype"], tuple(check.zarray["chunks"]))
        except Exception as exc:  # noqa: BLE001  any reader failure is a named mismatch
            return found + [Mismatch(name, key, url, "decoding with the recorded chain", "a full chunk",
                                     f"{type(exc).__name__}: {exc}")]
        region = decoded[tuple(slice(0, c) for c in count)]
        found += _compare(name, key, url, "pixels decoded with the recorded chain", expected, region,
                          tolerance, result)
        result.pixels_checked_python += 1
        _add_decoder(result, chain_decoder(check.true_chain))
    if group is not None and check.true_chain.python_decodable:
        try:
            got_z = group[name][tuple(slice(s, s + c) for s, c in zip(start, count))]
        except Exception as exc:  # noqa: BLE001  any reader failure is a named mismatch
            found.append(Mismatch(name, key, url, "zarr-python read", "data", f"{type(exc).__name__}: {exc}"))
        else:
            found += _compare(name, key, url, "pixels through fsspec + zarr-python", expected, np.asarray(got_z),
                              tolerance, result)
            result.pixels_checked_zarr += 1
            _add_decoder(result, f"zarr-python {_version('zarr')} + {chain_decoder(check.true_chain)}")
    return found


def _version(package: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def chain_decoder(chain: CodecChain) -> str:
    """Who decodes `chain` in Python: imagecodecs (with the library behind
    its image codec, where the chain has one) or numcodecs."""
    ids = [c["id"] for c in (chain.compressor, *chain.filters) if c]
    if not any(i.startswith("imagecodecs_") for i in ids):
        return f"numcodecs {_version('numcodecs')}"
    import imagecodecs

    libraries = []
    for codec_id in (i for i in ids if i in IMAGE_LIBRARIES):
        version = getattr(imagecodecs, IMAGE_LIBRARIES[codec_id], None)
        libraries.append(str(version()) if callable(version) else IMAGE_LIBRARIES[codec_id])
    return f"imagecodecs {imagecodecs.__version__}" + (f" ({', '.join(libraries)})" if libraries else "")


def decode_tolerance(chain: CodecChain) -> float:
    """Largest difference accepted between a chunk decoded in Python and
    GDAL's read of the source: JPEG_TOLERANCE for JPEG, else exact."""
    ids = {c["id"] for c in (chain.compressor, *chain.filters) if c}
    return JPEG_TOLERANCE if "imagecodecs_jpeg" in ids else 0


def _add_decoder(result: ArrayResult, decoder: str) -> None:
    if decoder not in result.decoders:
        result.decoders.append(decoder)


def _read_succeeds(arr: Any, start: list[int], count: list[int]) -> bool:
    """Whether GDAL returns values for a region (an error is what a
    references-only array must give)."""
    try:
        return arr.ReadAsArray(array_start_idx=start, count=count) is not None
    except RuntimeError:
        return False


def check_missing(check: _ArrayCheck, group: Any, start: list[int], count: list[int], key: str) -> list[Mismatch]:
    """A chunk with no data reads as the fill value, through GDAL and zarr-python."""
    name, zarray = check.name, check.zarray
    found: list[Mismatch] = []
    fill = zarray["fill_value"]
    fill = np.nan if fill == "NaN" else (0 if fill is None else fill)
    expected = np.full(count, fill, dtype=np.dtype(zarray["dtype"]))
    if check.arr is not None and check.chain.gdal_decodable:
        got = check.arr.ReadAsArray(array_start_idx=start, count=count)
        found += _compare(name, key, "(no data)", "no-data chunk through GDAL reads the fill value", expected, got)
    if group is not None and zarray["compressor"] != REFS_ONLY_COMPRESSOR:  # references-only: no values
        try:
            got_z = np.asarray(group[name][tuple(slice(s, s + c) for s, c in zip(start, count))])
        except Exception as exc:  # noqa: BLE001  any reader failure is a named mismatch
            found.append(Mismatch(name, key, "(no data)", "zarr-python read", "fill value",
                                  f"{type(exc).__name__}: {exc}"))
        else:
            found += _compare(name, key, "(no data)", "no-data chunk through zarr-python reads the fill value",
                              expected, got_z)
    return found


def _compare(name: str, key: str, url: str, what: str, expected: np.ndarray,
             got: np.ndarray | None, tolerance: float = 0, result: ArrayResult | None = None) -> list[Mismatch]:
    """A mismatch unless `got` equals `expected` (within `tolerance` for a
    lossy codec decoded by another library than GDAL's; the largest
    difference seen goes to `result`)."""
    if got is None:
        return [Mismatch(name, key, url, what, f"array {expected.shape}", "nothing")]
    got = np.asarray(got)
    if got.shape != expected.shape:
        got = got.reshape(expected.shape) if got.size == expected.size else got
    if got.shape == expected.shape and expected.dtype.kind in "iu" and result is not None:
        difference = float(np.abs(got.astype(np.int64) - expected.astype(np.int64)).max(initial=0))
        result.max_abs_difference = max(result.max_abs_difference, difference)
        if difference <= tolerance:
            return []
    if got.shape != expected.shape or not np.array_equal(got, expected, equal_nan=expected.dtype.kind in "fc"):
        if got.shape == expected.shape and expected.dtype.kind == "f":
            differ = ~((got == expected) | (np.isnan(got) & np.isnan(expected)))
            if np.isnan(expected[differ]).all() and (got[differ] == 0).all():
                return [Mismatch(name, key, url, what, "NaN where the source has NaN",
                                 f"{int(differ.sum())} NaN pixels read as 0 (imagecodecs' Lerc codec decodes "
                                 "LERC no-data pixels as 0; GDAL reads NaN)")]
        diff = "shape " + str(got.shape) if got.shape != expected.shape else \
            f"{int((got != expected).sum())} of {expected.size} values differ (first got {got.ravel()[np.argmax((got != expected).ravel())]})"
        return [Mismatch(name, key, url, what, f"{expected.dtype} {expected.shape} as in the source", diff)]
    return []


def check_array_metadata(arr: Any, name: str, zarray: dict[str, Any], attrs: dict[str, Any],
                         dims: list[str]) -> list[Mismatch]:
    """The array as GDAL opens it through the index has the dimensions,
    shape, block size, data type, scale, offset, nodata and SRS written."""
    found: list[Mismatch] = []

    def expect(what: str, expected: Any, got: Any) -> None:
        if expected != got:
            found.append(Mismatch(name, "-", "(metadata)", what, str(expected), str(got)))

    expect("dimension names", list(dims), [d.GetName() for d in arr.GetDimensions()])
    expect("shape", list(zarray["shape"]), [d.GetSize() for d in arr.GetDimensions()])
    expect("block size", list(zarray["chunks"]), list(arr.GetBlockSize()))
    gdal = gdal_module()
    expected_type = gdal.GetDataTypeByName({"i1": "Int8", "u1": "Byte", "i2": "Int16", "u2": "UInt16", "i4": "Int32",
                                            "u4": "UInt32", "i8": "Int64", "u8": "UInt64", "f4": "Float32",
                                            "f8": "Float64", "f2": "Float16", "c8": "CFloat32",
                                            "c16": "CFloat64"}[zarray["dtype"][1:]])
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
    return found
