"""What each reader makes of one TIFF: pixel-equal to GDAL's read of the
file, or the refusal message. Shared by the per-file tests and the test that
writes `docs/tiff-coverage.md`.

Readers: GDAL through the Kerchunk index (`ZARR:`), zarr-python through the
same index (fsspec references + imagecodecs), and the two CRI readers (the
Python reader `chunkindex.indexes.flat.CriIndex` and GDAL's `CRI` driver)
wherever they exist; a reader that is not there yet shows as "not available".
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

READERS = ("GDAL via CRI", "GDAL via ZARR:", "zarr-python", "Python CRI reader")
PIXEL_EQUAL = "pixel-equal"
WHOLE_PIXELS, WINDOW = 4_000_000, 1024


@dataclass
class Outcome:
    """One file: its layout (as GDAL reports it) and each reader's result."""

    label: str
    compression: str
    predictor: str
    layout: str
    bands: int
    dtype: str
    readers: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _describe(path: Path) -> tuple[Any, dict[str, Any]]:
    from osgeo import gdal

    gdal.UseExceptions()
    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    image = ds.GetMetadata("IMAGE_STRUCTURE") or {}
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        tiled = page.is_tiled
        layout = (f"tiled {page.tilewidth}x{page.tilelength}" if tiled
                  else f"strips of {page.rowsperstrip} rows" + (
                      f" (last {page.imagelength % page.rowsperstrip})" if page.imagelength % page.rowsperstrip
                      and page.rowsperstrip < page.imagelength else ""))
        if page.planarconfig == 2 and page.samplesperpixel > 1:
            layout += ", band-separate"
        if tif.is_bigtiff:
            layout += ", BigTIFF"
        if tif.byteorder == ">":
            layout += ", big-endian"
        compression = page.compression.name if hasattr(page.compression, "name") else str(page.compression)
        predictor = str(int(page.predictor))
        bits = page.bitspersample
    facts = {"compression": compression + (f" ({image['COMPRESSION']})" if "COMPRESSION" in image
                                           and image["COMPRESSION"].lower() not in compression.lower() else ""),
             "predictor": predictor, "layout": layout, "bands": ds.RasterCount,
             "dtype": gdal.GetDataTypeName(band.DataType) + (f" ({bits}-bit)" if bits not in (8, 16, 32, 64, 128)
                                                             else "")}
    return ds, facts


def _expected(ds: Any, window: tuple[slice, slice]) -> np.ndarray:
    """GDAL's read of the source in `window`: (bands, y, x)."""
    ys, xs = window
    values = ds.ReadAsArray(xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)
    return values[None] if values.ndim == 2 else values


def _index_window(dims: list[str], window: tuple[slice, slice]) -> tuple[slice, ...]:
    """`window` as a selection of an index array (time first)."""
    ys, xs = window
    if dims[-1] == "band":
        return (slice(0, 1), ys, xs, slice(None))
    if len(dims) == 4:
        return (slice(0, 1), slice(None), ys, xs)
    return (slice(0, 1), ys, xs)


def _compare_windows(expected: list[np.ndarray], read: Any, dims: list[str], parts: list[tuple[slice, slice]],
                     tolerance: float) -> str:
    """One verdict over every window: the first that is not pixel-equal, else the last."""
    verdict = PIXEL_EQUAL
    for want, window in zip(expected, parts):
        verdict = _compare(want, _as_bands(read(_index_window(dims, window)), dims), tolerance)
        if not verdict.startswith(PIXEL_EQUAL):
            return verdict
    return verdict


def _as_bands(values: np.ndarray, dims: list[str]) -> np.ndarray:
    """An index array (time first) as (bands, y, x)."""
    values = np.asarray(values)[0]
    if dims[-1] == "band":
        return np.moveaxis(values, -1, 0)
    return values if values.ndim == 3 else values[None]


def _compare(expected: np.ndarray, got: np.ndarray, tolerance: float) -> str:
    if got.shape != expected.shape:
        return f"different shape {got.shape} (GDAL {expected.shape})"
    if expected.dtype.kind in "iu":
        difference = int(np.abs(got.astype(np.int64) - expected.astype(np.int64)).max(initial=0))
        if difference == 0:
            return PIXEL_EQUAL
        if difference <= tolerance:
            return f"{PIXEL_EQUAL} within {difference} (JPEG)"
        return f"differs: max |difference| {difference}"
    if np.array_equal(got, expected, equal_nan=True):
        return PIXEL_EQUAL
    differ = ~((got == expected) | (np.isnan(got) & np.isnan(expected)))
    if expected.dtype.kind == "f" and np.isnan(expected[differ]).all() and (got[differ] == 0).all():
        return f"differs: {int(differ.sum())} NaN pixels (LERC no-data) read as 0"
    return f"differs in {int(differ.sum())} values"


def _refusal(exc: BaseException, path: Path) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.replace(str(path.parent) + "/", "")
    text = re.sub(r"\S*/tiff-coverage-[^/\s]+/", "", text)  # the run's temporary folder: the table stays stable
    text = re.sub(r"^recipe one: no array can be written as Kerchunk references: ", "", text)
    return "refused: " + re.sub(r"\s+", " ", text)


def cri_available() -> str | None:
    """None when the CRI writer and Python reader are in the package, else why not."""
    try:
        flat = importlib.import_module("chunkindex.indexes.flat")
    except ImportError:
        return "not available (no chunkindex.indexes.flat)"
    if not (hasattr(flat, "write_cri_parquet") and hasattr(flat, "CriIndex")):
        return "not available (the CRI writer/reader is not on main yet)"
    return None


def _gdal_read(array: Any, selection: tuple[slice, ...]) -> np.ndarray:
    """A multidimensional GDAL array read of `selection` (slices with bounds or full)."""
    sizes = [d.GetSize() for d in array.GetDimensions()]
    start = [s.start or 0 for s in selection]
    count = [(s.stop if s.stop is not None else n) - (s.start or 0) for s, n in zip(selection, sizes)]
    return array.ReadAsArray(array_start_idx=start, count=count)


def _cri_outcomes(path: Path, workdir: Path, expected: list[np.ndarray],
                  parts: list[tuple[slice, slice]]) -> dict[str, str]:
    """Write the file's CRI index from the same headers and read it back
    with the Python reader and, where GDAL has it, the CRI driver."""
    from osgeo import gdal

    from chunkindex.formats import extractor_for
    from chunkindex.indexes import flat
    from chunkindex.pipeline import quick_recipe, store_spec
    from chunkindex.sources.listing import list_sources

    out: dict[str, str] = {}
    recipe = quick_recipe("one", str(path.parent), glob=path.name)
    spec = store_spec(recipe, "/")
    target = workdir / "cri" / "one.cri.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        manifest = list_sources(recipe, spec)
        extractor = extractor_for(recipe.format)
        assembled = extractor.assemble(recipe, manifest, extractor.read_batch(recipe, spec, manifest))
        flat.write_cri_parquet(assembled, target)
    except ValueError as exc:
        refusal = _refusal(exc, path)
        return {"Python CRI reader": refusal, "GDAL via CRI": refusal}
    index = flat.CriIndex(target)
    dims = list(index.array("data").dims)
    try:
        out["Python CRI reader"] = _compare_windows(
            expected, lambda sel: index.read("data", window=sel), dims, parts, 0)
    except ValueError as exc:
        out["Python CRI reader"] = _refusal(exc, path)
    if gdal.GetDriverByName("CRI") is None:
        out["GDAL via CRI"] = "not available (GDAL has no CRI driver yet)"
        return out
    try:
        ds = gdal.OpenEx(f'CRI:"{target}"', gdal.OF_MULTIDIM_RASTER)
        array = ds.GetRootGroup().OpenMDArray("data")
        out["GDAL via CRI"] = _compare_windows(expected, lambda sel: _gdal_read(array, sel), dims, parts, 0)
    except RuntimeError as exc:
        out["GDAL via CRI"] = _refusal(exc, path)
    return out


def windows(height: int, width: int, block_height: int) -> list[tuple[slice, slice]]:
    """What is compared: the whole image up to WHOLE_PIXELS, else its corner
    and centre windows of up to WINDOW pixels and 16 block rows (edges and
    interior, in bounded time: a file of one-row strips has 3,600 chunks)."""
    if height * width <= WHOLE_PIXELS:
        return [(slice(0, height), slice(0, width))]
    h, w = min(WINDOW, height, 16 * max(block_height, 1)), min(WINDOW, width)
    starts = [(0, 0), (height - h, width - w), ((height - h) // 2, (width - w) // 2)]
    return [(slice(y, y + h), slice(x, x + w)) for y, x in starts]


@functools.cache
def outcome(path_text: str, label: str) -> Outcome:
    """Index one TIFF and read it back through every reader available
    (cached: the per-file tests and the table share one run per file)."""
    from osgeo import gdal

    from chunkindex.pipeline import quick_recipe, run_recipe
    from chunkindex.validate import JPEG_TOLERANCE, ValidationFailed, _zarr_group

    path, workdir = Path(path_text), Path(tempfile.mkdtemp(prefix="tiff-coverage-"))
    ds, facts = _describe(path)
    result = Outcome(label=label, **facts)
    parts = windows(ds.RasterYSize, ds.RasterXSize, ds.GetRasterBand(1).GetBlockSize()[1])
    expected = [_expected(ds, w) for w in parts]
    missing = cri_available()
    if missing:
        result.readers["Python CRI reader"] = result.readers["GDAL via CRI"] = missing
    else:
        result.readers.update(_cri_outcomes(path, workdir, expected, parts))
    recipe = quick_recipe("one", str(path.parent), glob=path.name, sample_chunks=20)
    try:
        run = run_recipe(recipe, "/", workdir)
    except (ValueError, ValidationFailed) as exc:  # TiffHeaderError, UnsupportedCodec, KerchunkRefused, ...
        refusal = _refusal(exc, path)
        result.readers["GDAL via ZARR:"] = result.readers["zarr-python"] = refusal
        return result
    index = run.outputs["kerchunk_parquet"]
    summary = run.summary
    result.notes = list(summary.notes)
    if "data" in summary.left_out_of_kerchunk:
        left_out = next((n for n in summary.notes if n.startswith("data: left out")), "data array not written")
        result.readers["GDAL via ZARR:"] = result.readers["zarr-python"] = "refused: " + left_out
        return result
    readers = summary.readers["data"]
    zattrs = json.loads((Path(index) / ".zmetadata").read_text())["metadata"]["data/.zattrs"]
    dims = zattrs["_ARRAY_DIMENSIONS"]
    if "gdal" in readers:
        mdim = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER)
        array = mdim.GetRootGroup().OpenMDArray("data")
        result.readers["GDAL via ZARR:"] = _compare_windows(
            expected, lambda sel: _gdal_read(array, sel), dims, parts, 0)
    else:
        why = next((n.split(": ", 1)[1] for n in summary.notes
                    if n.startswith("data: ") and "not decodable by GDAL" in n), "its codec")
        result.readers["GDAL via ZARR:"] = f"references only: {why}"
    if "zarr-python+imagecodecs" in readers:
        group = _zarr_group(Path(index), str(path), None)
        result.readers["zarr-python"] = _compare_windows(
            expected, lambda sel: group["data"][sel], dims, parts, JPEG_TOLERANCE)
    else:
        result.readers["zarr-python"] = "no decoder"
    return result


def _cell(text: str, limit: int = 220) -> str:
    """A table cell: no pipes, long refusals cut (the test output has them whole)."""
    text = text.replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown(outcomes: list[Outcome]) -> str:
    """The coverage table as Markdown, with a count per reader."""
    lines = ["# TIFF coverage", "",
             "Written by `tests/test_tiff_features.py::test_coverage_table` (do not edit): every real-world",
             "file of `../shared/fixtures/real-cogs/` and every synthetic feature file of the `tiff-features`",
             "fixture set, indexed and read back by each reader, compared with GDAL's own read of the file",
             "(`pixel-equal`), or the reader's refusal. Images over 4 Mpixel are compared on their corner",
             "and centre windows (up to 1024 x 1024 pixels and 16 blocks high), smaller ones whole.", ""]
    counts = {r: sum(o.readers.get(r, "").startswith(PIXEL_EQUAL) for o in outcomes) for r in READERS}
    lines.append("Pixel-equal: " + ", ".join(f"{r} {counts[r]} of {len(outcomes)}" for r in READERS) + ".")
    lines += ["", "| file | compression | predictor | layout | bands | type | " + " | ".join(READERS) + " |",
              "|---|---|---|---|---:|---|" + "---|" * len(READERS)]
    for o in outcomes:
        cells = [_cell(o.readers.get(r, "")) for r in READERS]
        lines.append(f"| `{o.label}` | {o.compression} | {o.predictor} | {o.layout} | {o.bands} | {o.dtype} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
