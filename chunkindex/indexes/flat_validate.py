"""Validate a CRI index against its sources, with the same sample and source
readers as the Kerchunk validation (chunkindex.validate):

* every sampled chunk's row (file, offset, length) equals the source's own
  tile table / HDF5 chunk lookup; a chunk without a row has no data there;
* its pixels, read through the CRI Python reader (`open_index(...).read`),
  equal GDAL's read of the source (h5py where GDAL lacks the HDF5 filter);
* when GDAL has the CRI driver plugin loaded (gdal-driver/), the same
  pixels read through it (`CRI:"<index>"`, multidimensional; overview levels
  by `GetOverview`) equal the source too: GDAL then decodes every codec
  chain of the index, TIFF predictors included.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from chunkindex.indexes.flat import CriIndex, open_index
from chunkindex.sources.stores import gdal_module
from chunkindex.validate import ArrayResult, Mismatch, ValidationReport, _add_decoder, _compare, sample_chunks

CRI_DRIVER_READER = "gdal-cri"


def open_cri_driver(index: str | Path) -> tuple[Any, str | None]:
    """The root group of `index` through GDAL's CRI driver, or (None, why not).

    Args:
        index: a `.cri.parquet` / `.cri.gpkg` file.

    Returns:
        (root group, None), or (None, a note saying why GDAL cannot read it:
        no CRI plugin loaded, or the error GDAL gave when opening).
    """
    gdal = gdal_module()
    if gdal.GetDriverByName("CRI") is None:
        return None, "GDAL has no CRI driver plugin loaded: pixels checked through the Python CRI reader only"
    try:
        return gdal.OpenEx(f'CRI:"{index}"', gdal.OF_MULTIDIM_RASTER).GetRootGroup(), None
    except RuntimeError as exc:
        return None, f"GDAL's CRI driver does not open {index}: {exc}"


def open_cri_array(root: Any, name: str, level: int, label: str, index: str | Path) -> tuple[Any, list[Mismatch]]:
    """Array `name` at `level` through the CRI driver (levels > 0 are its overviews)."""
    try:
        array = root.OpenMDArray(name)
        if level:
            array = array.GetOverview(level - 1)
        if array is None:
            raise RuntimeError(f"no overview {level - 1}")
        return array, []
    except RuntimeError as exc:
        return None, [Mismatch(label, "-", str(index), "GDAL's CRI driver opens the array", "opened", str(exc))]


def check_pixels_through_cri_driver(array: Any, label: str, key: str, url: str, window: tuple[slice, ...],
                                    truth: np.ndarray) -> list[Mismatch]:
    """The chunk's pixels read by GDAL through the CRI driver equal the source's."""
    try:
        got = array.ReadAsArray(array_start_idx=[w.start for w in window],
                                count=[w.stop - w.start for w in window])
    except RuntimeError as exc:
        return [Mismatch(label, key, url, "pixels through GDAL's CRI driver", "decoded", f"RuntimeError: {exc}")]
    return _compare(label, key, url, "pixels through GDAL's CRI driver vs the source", truth, got)


def _source_view(cri: CriIndex, name: str, level: int) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The (zarray, attrs, dims) a source reader expects for one level."""
    array = cri.arrays[name]
    meta = array.level(level)
    entry = cri.document["arrays"][name]
    factor = 1
    if level:
        y = next((j for j, d in enumerate(array.dims) if cri.dimensions.get(d, {}).get("type") == "HORIZONTAL_Y"),
                 len(array.dims) - 2)
        factor = round(array.shape[y] / meta["shape"][y])
    zarray = {"shape": meta["shape"], "chunks": meta["chunk_shape"], "dtype": entry["dtype"]}
    source = entry.get("source", {})
    levels = [int(item["level"]) for item in entry["levels"]]
    if "ifd" in meta.get("source", {}):
        ifd = int(meta["source"]["ifd"])
    else:
        ifd = source["ifds"][levels.index(level)] if "ifds" in source else level
    attrs = {"chunkindex": {"ifd": ifd, "overview_factor": factor, **({"mask": True} if source.get("mask") else {}),
                            "source_variable": source.get("source_variable", name),
                            "codec": {"description": " -> ".join(s["name"] for s in meta["codec"]) or "none"}}}
    return zarray, attrs, list(array.dims)


def validate_cri(index: str | Path, source: Any, sample_count: int, seed: int, time_dim: str | None = "time",
                 store_options: dict[str, Any] | None = None,
                 progress: Callable[[str], None] | None = None) -> ValidationReport:
    """Check a CRI index against its sources (see the module docstring).

    Args:
        index: the `.cri.parquet` file.
        source: the format's source reader (TiffSource, HdfSource).
        sample_count: random chunks per array and level (plus edges, first
            and last steps, file boundaries, chunks without data).
        seed: the sample's seed.
        time_dim: the concatenation dimension.
        store_options: obstore options for the referenced files.
        progress: called with each array/level name.
    """
    cri = open_index(index, store_options)
    report = ValidationReport(index=str(index))
    gdal_root, why_not = open_cri_driver(index)
    if why_not:
        report.notes.append(why_not)
    if hasattr(source, "global_values") and time_dim in cri.dimensions:
        values = cri.dimensions[time_dim].get("values")
        source.global_values = np.asarray(values, np.float64) if values is not None else None
    for name, array in cri.arrays.items():
        if cri.document["arrays"][name].get("role") == "coordinate":
            continue
        for level, meta in sorted(array.levels.items()):
            label = name if level == 0 else f"{name}@level{level}"
            if progress:
                progress(label)
            result = ArrayResult(array=label, readers=["cri-python"], gdal_opened=False)
            report.arrays.append(result)
            gdal_array = None
            if gdal_root is not None:
                gdal_array, failed = open_cri_array(gdal_root, name, level, label, index)
                report.mismatches.extend(failed)
                result.gdal_opened = gdal_array is not None
                if gdal_array is not None:
                    result.readers.append(CRI_DRIVER_READER)
            zarray, attrs, dims = _source_view(cri, name, level)
            grid = tuple(math.ceil(s / c) for s, c in zip(meta["shape"], meta["chunk_shape"]))
            rows = cri.rows(name, level)
            numbers = np.ravel_multi_index(tuple(rows[f"c{j}"].to_numpy() for j in range(len(grid))), grid) \
                if rows.num_rows else np.zeros(0, np.int64)
            present = np.zeros(int(np.prod(grid)), bool)
            present[numbers] = True
            codes = np.full(present.size, -1, np.int32)
            codes[numbers], paths = _path_codes(rows["path"] if rows.num_rows else pa.chunked_array([], pa.string()))
            time_axis = dims.index(time_dim) if time_dim in dims else None
            row_of = np.full(present.size, -1, np.int64 if numbers.size >= 2**31 else np.int32)
            row_of[numbers] = np.arange(numbers.size)
            chosen = sample_chunks(grid, present, sample_count, seed, time_axis, codes)
            for number in chosen.tolist():
                chunk = tuple(int(i) for i in np.unravel_index(number, grid))
                key = ".".join(map(str, chunk))
                result.chunks_checked += 1
                window = tuple(slice(i * c, min((i + 1) * c, s))
                               for i, c, s in zip(chunk, meta["chunk_shape"], meta["shape"]))
                if present[number]:
                    row = int(row_of[number])
                    url = cri.resolve(paths[codes[number]])
                    got = (int(rows["offset"][row].as_py()), int(rows["length"][row].as_py()))
                else:
                    url = _file_of_step(cri, rows, paths, chunk, time_axis)
                    got = (0, 0)
                if url is None:
                    continue  # a step with no file at all: nothing to compare with
                try:
                    expected = tuple(source.tile_ref(url, zarray, attrs, dims, chunk))
                except Exception as exc:  # noqa: BLE001 - reported as a mismatch
                    report.mismatches.append(Mismatch(label, key, url, "source tile table", "readable",
                                                      f"{type(exc).__name__}: {exc}"))
                    continue
                if present[number] or expected != (0, 0):
                    result.refs_checked += 1
                    if got != expected:
                        report.mismatches.append(Mismatch(label, key, url, "(offset, length)", str(expected),
                                                          str(got)))
                        continue
                if not present[number]:
                    result.missing_chunks_checked += 1
                try:
                    values = cri.read(name, window, level)
                    truth = np.asarray(source.pixels(url, zarray, attrs, dims, chunk)).reshape(values.shape)
                except Exception as exc:  # noqa: BLE001 - reported as a mismatch
                    report.mismatches.append(Mismatch(label, key, url, "pixels through the CRI reader",
                                                      "decoded", f"{type(exc).__name__}: {exc}"))
                    continue
                found = _compare(label, key, url, "pixels through the CRI reader vs the source", truth, values)
                report.mismatches.extend(found)
                if not found:
                    result.pixels_checked_python += 1
                    _add_decoder(result, "chunkindex CRI reader")
                if gdal_array is not None:
                    found = check_pixels_through_cri_driver(gdal_array, label, key, url, window, truth)
                    report.mismatches.extend(found)
                    if not found:
                        result.pixels_checked_gdal += 1
                        _add_decoder(result, f"GDAL {gdal_module().__version__} CRI driver")
    report.notes.extend(getattr(source, "notes", []))
    return report


def _path_codes(path: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """(a code per row, -1 for none; the paths by code) numbered by first
    appearance, as `dictionary_encode` numbers them, but from the column's own
    dictionary: decoding a dictionary column first would make one string per
    row (1.3 GB for one BRAN variable's 17 M chunks)."""
    combined = path.combine_chunks()
    if not isinstance(combined, pa.DictionaryArray):
        encoded = pa.compute.dictionary_encode(combined)
        return encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32), \
            encoded.dictionary.to_pylist()
    indices = combined.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    valid = np.flatnonzero(indices >= 0)
    used, first = np.unique(indices[valid], return_index=True)
    order = used[np.argsort(first)]  # dictionary entries in order of first appearance
    code_of: dict[str, int] = {}
    remap = np.full(len(combined.dictionary) + 1, -1, np.int32)  # the last slot maps -1 (no path)
    for entry, text in zip(order.tolist(), combined.dictionary.take(pa.array(order)).to_pylist()):
        remap[entry] = code_of.setdefault(text, len(code_of))  # equal strings share a code
    return remap[indices], list(code_of)


def _file_of_step(cri: CriIndex, rows: pa.Table, paths: list[str], chunk: tuple[int, ...],
                  time_axis: int | None) -> str | None:
    """The file holding the other chunks of `chunk`'s time step (for a chunk
    without a row, whose source tile must then be empty)."""
    if not rows.num_rows:
        return None
    column = rows[f"c{time_axis}"].to_numpy() if time_axis is not None else None
    hits = np.flatnonzero(column == chunk[time_axis]) if column is not None else np.arange(rows.num_rows)
    if hits.size == 0:
        return None
    path = rows["path"][int(hits[0])].as_py()
    return cri.resolve(path) if path is not None else None
