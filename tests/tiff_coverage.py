"""What each reader makes of one TIFF: pixel-equal to GDAL's read of the
file, or the refusal message. Shared by the per-file tests and the test that
writes `docs/tiff-coverage.md`.

Readers: GDAL through the Kerchunk index (`ZARR:`), zarr-python through the
same index (fsspec references + imagecodecs), and the two CRI readers (the
Python reader and GDAL's CRI driver) once they exist in the package / in
GDAL; a reader that is not there yet shows as "not available".
"""

from __future__ import annotations

import functools
import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

READERS = ("GDAL via CRI", "GDAL via ZARR:", "zarr-python", "Python CRI reader")
PIXEL_EQUAL = "pixel-equal"


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


def _expected(ds: Any) -> np.ndarray:
    """GDAL's read of the source: (bands, y, x)."""
    values = ds.ReadAsArray()
    return values[None] if values.ndim == 2 else values


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
    return f"differs in {int((got != expected).sum())} values"


def _refusal(exc: BaseException, path: Path) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.replace(str(path.parent) + "/", "").replace("_refs_only", "")
    return "refused: " + re.sub(r"\s+", " ", text)


def cri_readers() -> dict[str, Any]:
    """The CRI readers present: name -> callable(index, variable) -> array, or a reason string."""
    from osgeo import gdal

    readers: dict[str, Any] = {}
    try:
        flat = importlib.import_module("chunkindex.indexes.flat")
        reader = getattr(flat, "read_array", None)
        readers["Python CRI reader"] = reader if reader else "not available (no chunkindex.indexes.flat.read_array)"
    except ImportError:
        readers["Python CRI reader"] = "not available (the CRI writer/reader is not on main yet)"
    if gdal.GetDriverByName("CRI") is None:
        readers["GDAL via CRI"] = "not available (GDAL has no CRI driver yet)"
    else:
        readers["GDAL via CRI"] = "not available (CRI index writer not on main yet)"
    return readers


@functools.cache
def outcome(path_text: str, label: str, workdir_text: str) -> Outcome:
    """Index one TIFF and read it back through every reader available."""
    from osgeo import gdal

    from chunkindex.pipeline import quick_recipe, run_recipe
    from chunkindex.validate import JPEG_TOLERANCE, ValidationFailed, _zarr_group

    path, workdir = Path(path_text), Path(workdir_text)
    ds, facts = _describe(path)
    result = Outcome(label=label, **facts)
    expected = _expected(ds)
    for name, reader in cri_readers().items():
        result.readers[name] = reader if isinstance(reader, str) else "not run"
    recipe = quick_recipe("one", str(path.parent), glob=path.name, sample_chunks=20)
    try:
        run = run_recipe(recipe, "/", workdir)
    except (ValueError, ValidationFailed) as exc:  # TiffHeaderError, UnsupportedCodec, KerchunkRefused, ...
        refusal = _refusal(exc, path)
        result.readers["GDAL via ZARR:"] = result.readers["zarr-python"] = refusal
        return result
    index = run["outputs"]["kerchunk_parquet"]
    summary = run["summary"]
    result.notes = list(summary["notes"])
    if "data" in summary["left_out_of_kerchunk"]:
        left_out = next((n for n in summary["notes"] if n.startswith("data: left out")), "data array not written")
        result.readers["GDAL via ZARR:"] = result.readers["zarr-python"] = "refused: " + left_out
        return result
    readers = summary["readers"]["data"]
    zattrs = json.loads((Path(index) / ".zmetadata").read_text())["metadata"]["data/.zattrs"]
    dims = zattrs["_ARRAY_DIMENSIONS"]
    if "gdal" in readers:
        mdim = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER)
        array = mdim.GetRootGroup().OpenMDArray("data")
        result.readers["GDAL via ZARR:"] = _compare(expected, _as_bands(array.ReadAsArray(), dims), 0)
    else:
        codec = summary["notes"]
        why = next((n.split(": ", 1)[1] for n in codec if n.startswith("data: ")), "its codec")
        result.readers["GDAL via ZARR:"] = f"references only: {why}"
    if "zarr-python+imagecodecs" in readers:
        group = _zarr_group(Path(index), str(path), None)
        result.readers["zarr-python"] = _compare(expected, _as_bands(group["data"][...], dims), JPEG_TOLERANCE)
    else:
        result.readers["zarr-python"] = "no decoder"
    return result


def markdown(outcomes: list[Outcome]) -> str:
    """The coverage table as Markdown, with a count per reader."""
    lines = ["# TIFF coverage", "",
             "Written by `tests/test_tiff_features.py::test_coverage_table` (do not edit): every real-world",
             "file of `../shared/fixtures/real-cogs/` and every synthetic feature file of the `tiff-features`",
             "fixture set, indexed and read back by each reader, compared with GDAL's own read of the file",
             "(`pixel-equal`), or the reader's refusal.", ""]
    counts = {r: sum(o.readers.get(r, "").startswith(PIXEL_EQUAL) for o in outcomes) for r in READERS}
    lines.append("Pixel-equal: " + ", ".join(f"{r} {counts[r]} of {len(outcomes)}" for r in READERS) + ".")
    lines += ["", "| file | compression | predictor | layout | bands | type | " + " | ".join(READERS) + " |",
              "|---|---|---|---|---:|---|" + "---|" * len(READERS)]
    for o in outcomes:
        cells = [o.readers.get(r, "").replace("|", "/") for r in READERS]
        lines.append(f"| `{o.label}` | {o.compression} | {o.predictor} | {o.layout} | {o.bands} | {o.dtype} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
