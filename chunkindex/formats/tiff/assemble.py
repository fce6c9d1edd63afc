"""COG archives: turn per-file TIFF levels into time-stacked arrays.

Each variable becomes one array (time, y, x) - (time, y, x, band) for
pixel-interleaved and (time, band, y, x) for band-separate files - and each
internal overview an array of the same name in the sub-group
`ovr<factor>/` with its own coordinates (`lat_ovr<factor>`, ...), where it
does not crowd the root and xarray's `open_datatree` reads each level as a
dataset (GDAL lists every level among its subdatasets). TIFF tile order is
the Zarr C order of those arrays, so a file's tile columns are placed into
the reference columns with one slice assignment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chunkindex.formats.tiff.chain import tiff_chain
from chunkindex.model import (
    ArraySpec,
    AssembledIndex,
    ChunkGrid,
    ReferenceColumns,
    level_group,
    spatial_coordinates,
    stacked_numbers,
    storage_dtype,
    time_coordinate,
)
from chunkindex.recipe import Recipe, Variable

log = logging.getLogger(__name__)

# Columns that must agree, level by level, for files to form one array.
LAYOUT_COLUMNS = ("kind", "width", "height", "tile_width", "tile_height", "samples", "planar",
                  "dtype", "compression", "predictor", "crs")


class LayoutMismatch(ValueError):
    """A file whose layout differs from the first file of its variable."""


def _fits(value: float, dtype: str) -> bool:
    numpy_dtype = storage_dtype(dtype)
    if numpy_dtype.names:  # complex integers: the real part's type
        numpy_dtype = numpy_dtype["real"]
    if numpy_dtype.kind in "fc":
        return True
    info = np.iinfo(numpy_dtype)
    return float(value).is_integer() and info.min <= value <= info.max


def _crs_attribute(crs: str | None) -> dict[str, Any] | None:
    if crs and crs.startswith("EPSG:"):
        return {"url": f"http://www.opengis.net/def/crs/EPSG/0/{crs.split(':', 1)[1]}"}
    return None


# RPCCoefficientTag value order (GDAL's RPC metadata names).
RPC_SCALARS = ("ERR_BIAS", "ERR_RAND", "LINE_OFF", "SAMP_OFF", "LAT_OFF", "LONG_OFF", "HEIGHT_OFF",
               "LINE_SCALE", "SAMP_SCALE", "LAT_SCALE", "LONG_SCALE", "HEIGHT_SCALE")
RPC_LISTS = ("LINE_NUM_COEFF", "LINE_DEN_COEFF", "SAMP_NUM_COEFF", "SAMP_DEN_COEFF")
PHOTOMETRIC_BANDS = {0: ["Gray"], 1: ["Gray"], 2: ["Red", "Green", "Blue"], 3: ["Palette"],
                     5: ["Cyan", "Magenta", "Yellow", "Black"], 6: ["Red", "Green", "Blue"]}
EXTRA_SAMPLE_NAMES = {1: "Alpha", 2: "Alpha"}


def color_table(color_map: list[int], bits: int) -> list[list[int]]:
    """GDAL's 8-bit RGBA colour table of a TIFF ColorMap (16-bit reds, greens, blues).

    GDAL divides by 257 when every entry is a multiple of 257 (the usual
    8-bit-to-16-bit scaling), by 256 otherwise, and not at all when no entry
    exceeds 255; the same here.
    """
    values = np.asarray(color_map, dtype=np.int64).reshape(3, -1)[:, : 1 << bits]
    if values.max(initial=0) < 256:
        divisor = 1
    else:
        divisor = 257 if not (values % 257).any() else 256
    rgb = (values // divisor).T
    return np.column_stack([rgb, np.full(len(rgb), 255)]).tolist()


def tiff_attributes(full: dict[str, Any], level: dict[str, Any], is_mask: bool) -> dict[str, Any]:
    """Variable attributes from the TIFF tags GDAL shows as metadata: colour
    table, colour interpretation, GCPs, RPCs, PixelIsPoint; for a mask, the
    meaning of its values."""
    if is_mask:
        return {"flag_values": [0, 1], "flag_meanings": "masked valid",
                "long_name": "internal TIFF mask (GDAL's per-dataset mask band reads 1 as 255)"}
    attrs: dict[str, Any] = {}
    samples = level["samples"]
    names = list(PHOTOMETRIC_BANDS.get(level["photometric"], []))[:samples]
    extra = list(level["extra_samples"] or [])
    names += [EXTRA_SAMPLE_NAMES.get(e, "Undefined") for e in extra][: samples - len(names)]
    names += ["Undefined"] * (samples - len(names))
    if names != ["Gray"]:  # a single grey band is every reader's default
        attrs["color_interpretation"] = names
    if level["photometric"] == 0:
        attrs["chunkindex_photometric"] = "MinIsWhite (values as stored: 0 is white)"
    if level["color_map"]:
        attrs["color_table"] = color_table(level["color_map"], level["bits"])
    if full["gcps"]:
        points = np.asarray(full["gcps"], dtype=np.float64).reshape(-1, 6)
        attrs["gcps"] = [{"pixel": p[0], "line": p[1], "x": p[3], "y": p[4], "z": p[5]} for p in points.tolist()]
        if full["crs"]:
            attrs["gcps_crs"] = full["crs"]
    if full["rpc"] and len(full["rpc"]) == 92:
        rpc = full["rpc"]
        attrs["rpc"] = {**{k: rpc[i] for i, k in enumerate(RPC_SCALARS)},
                        **{k: rpc[12 + 20 * i: 32 + 20 * i] for i, k in enumerate(RPC_LISTS)}}
    if full["pixel_is_point"]:
        attrs["AREA_OR_POINT"] = "Point"
    return attrs


def check_layouts(levels: pa.Table, urls: dict[int, str], first_file: int, on_mismatch: str,
                  skipped: list[str]) -> pa.Table:
    """Drop (or refuse) files whose levels differ from `first_file`'s."""
    reference = levels.filter(pc.equal(levels["file_id"], first_file))
    n_levels = reference.num_rows
    bad: dict[int, str] = {}
    ref_rows = reference.select(["ifd", *LAYOUT_COLUMNS, "geotransform"]).to_pylist()
    ifd = levels["ifd"].to_numpy()
    file_id = levels["file_id"].to_numpy()
    # Position of each row's IFD among the reference file's IFDs (-1: it has none).
    lookup = np.full(max(int(ifd.max(initial=0)), max((r["ifd"] for r in ref_rows), default=0)) + 1, -1, np.int64)
    lookup[[r["ifd"] for r in ref_rows]] = np.arange(len(ref_rows))
    position = lookup[ifd]
    found: dict[int, tuple[int, int, str]] = {}  # file -> (IFD, column order, message): the first wins
    for order, column in enumerate((*LAYOUT_COLUMNS, "geotransform")):
        if column == "geotransform":
            differs = _geotransforms_differ(levels[column], [r[column] for r in ref_rows], position)
        else:
            values = levels[column].to_numpy(zero_copy_only=False)
            expected = np.array([r[column] for r in ref_rows] + [None], dtype=object)[position]
            differs = (values.astype(object) != expected) | (position < 0)
        for row in np.flatnonzero(differs):
            fid, where = int(file_id[row]), (int(ifd[row]), order)
            if fid not in found or where < found[fid][:2]:
                got = levels[column][int(row)].as_py()
                want = ref_rows[position[row]][column] if position[row] >= 0 else None
                found[fid] = (*where, (f"IFD {int(ifd[row])} {column} is {got!r}, "
                                       f"but {urls[first_file]} has {want!r}"))
    bad.update((fid, message) for fid, (_, _, message) in found.items())
    for item in pc.value_counts(levels["file_id"]).to_pylist():
        if item["counts"] != n_levels and item["values"] not in bad:
            bad[item["values"]] = f"{item['counts']} IFDs instead of {n_levels}"
    if not bad:
        return levels
    messages = [f"{urls[fid]}: {why}" for fid, why in sorted(bad.items())]
    if on_mismatch == "error":
        raise LayoutMismatch("files do not line up into one array:\n  " + "\n  ".join(messages))
    skipped.extend(messages)
    for message in messages:
        log.warning("skipping %s", message)
    keep = pc.invert(pc.is_in(levels["file_id"], pa.array(sorted(bad), pa.int32())))
    return levels.filter(keep)


class _TileColumns:
    """Tile offsets or byte counts of every level row, gathered level by level.

    A batch table's rows run file by file, each file with the same IFDs, so
    one IFD's tiles of every file form a strided view of the flat values;
    only irregular rows (missing files, other layouts) need fancy indexing.
    """

    def __init__(self, column: pa.ChunkedArray):
        self.chunks = [(c.offsets.to_numpy().astype(np.int64), c.values.to_numpy()) for c in column.chunks]
        self.first_row = np.cumsum([0] + [len(c) for c in column.chunks])

    def gather(self, rows: np.ndarray, tiles: int) -> np.ndarray:
        """(len(rows), tiles) values of table rows `rows` (ascending), each with `tiles` values."""
        out = np.empty((rows.size, tiles), np.int64)
        done = 0
        for (offsets, values), begin, end in zip(self.chunks, self.first_row[:-1], self.first_row[1:]):
            local = rows[(rows >= begin) & (rows < end)] - begin
            if local.size == 0:
                continue
            starts = offsets[local]
            target = out[done:done + local.size]
            step = int(starts[1] - starts[0]) if local.size > 1 else 0
            regular = local.size > 1 and step >= tiles and bool((np.diff(starts) == step).all())
            if regular and starts[0] + step * (local.size - 1) + tiles <= values.size:
                view = np.lib.stride_tricks.as_strided(
                    values[starts[0]:], shape=(local.size, tiles),
                    strides=(step * values.itemsize, values.itemsize), writeable=False)
                target[:] = view
            else:
                target[:] = values[starts[:, None] + np.arange(tiles)]
            done += local.size
        return out


def _geotransforms_differ(column: pa.ChunkedArray, reference: list[list[float] | None],
                          position: np.ndarray) -> np.ndarray:
    """Rows whose geotransform differs from their reference IFD's (vectorised)."""
    present = column.is_valid().to_numpy(zero_copy_only=False)
    values = np.full((len(column), 6), np.nan)
    if present.any():
        values[present] = pc.list_flatten(column.filter(column.is_valid())).to_numpy().reshape(-1, 6)
    expected = np.array([r if r is not None else [np.nan] * 6 for r in reference] + [[np.nan] * 6], np.float64)[position]
    scale = np.maximum(1.0, np.nanmax(np.abs(expected), axis=1, initial=0.0))[:, None]
    same = np.isclose(values, expected, rtol=0, atol=0) | (np.abs(values - expected) <= 1e-9 * scale)
    both_missing = np.isnan(values).all(axis=1) & np.isnan(expected).all(axis=1)
    return ~(same.all(axis=1) | both_missing)


def _chunk_layout(level: dict[str, Any], n_times: int, y_dim: str, x_dim: str, time_dim: str
                  ) -> tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...], int]:
    """dims, shape, chunks and predictor axis of one TIFF level stacked in time."""
    h, w, th, tw, s = (level[k] for k in ("height", "width", "tile_height", "tile_width", "samples"))
    if s == 1:
        return (time_dim, y_dim, x_dim), (n_times, h, w), (1, th, tw), -1
    if level["planar"] == 1:
        return (time_dim, y_dim, x_dim, "band"), (n_times, h, w, s), (1, th, tw, s), -2
    return (time_dim, "band", y_dim, x_dim), (n_times, s, h, w), (1, 1, th, tw), -1


@dataclass
class _Tiles:
    """Every file's tile columns as flat buffers made once, and the pool that
    overlaps two gathers (their copies are bound by first-touch page faults)."""

    ifd: np.ndarray
    file_id: np.ndarray
    offsets: _TileColumns
    counts: _TileColumns
    pool: ThreadPoolExecutor

    def level(self, in_variable: np.ndarray, ifd: int, tiles_per_file: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(file ids, offsets, byte counts) of one IFD of the variable's files, gathered
        straight from the list columns' buffers (every file has the same tile count)."""
        rows_of_level = np.flatnonzero(in_variable & (self.ifd == ifd))
        pending = self.pool.submit(self.offsets.gather, rows_of_level, tiles_per_file)
        sizes = self.counts.gather(rows_of_level, tiles_per_file)
        return self.file_id[rows_of_level], pending.result(), sizes


def _time_steps(var_rows: pa.Table, kept: np.ndarray, times_all: np.ndarray, has_time: bool
                ) -> tuple[dict[int, int], int]:
    """(file id -> its step along the time axis, the axis length); without
    times in the names, the files' order."""
    if has_time:
        var_times = var_rows.filter(pc.is_in(var_rows["file_id"], pa.array(kept, pa.int32())))["time"]
        var_times = var_times.to_numpy(zero_copy_only=False)
        axis = np.unique(times_all.astype("datetime64[us]"))
    else:
        var_times = np.arange(kept.size)
        axis = np.arange(kept.size)
    return dict(zip(kept.tolist(), np.searchsorted(axis, var_times).tolist())), axis.size


def _chunk_references(fids: np.ndarray, offsets: np.ndarray, sizes: np.ndarray, steps: np.ndarray,
                      shape: tuple[int, ...], chunks: tuple[int, ...]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(file ids in time order, url index, offsets, sizes per chunk) of one
    level stacked along time: `steps[i]` is file `fids[i]`'s time step."""
    order = np.argsort(steps, kind="stable")
    if not np.array_equal(order, np.arange(order.size)):  # files not in time order
        offsets, sizes, fids, steps = offsets[order], sizes[order], fids[order], steps[order]
    file_number = np.empty(sizes.shape, np.int32)
    file_number[:] = np.arange(fids.size, dtype=np.int32)[:, None]  # faster than np.repeat
    if np.array_equal(steps, np.arange(shape[0])):
        # Every step has its file, in order: the tile columns are the chunk columns.
        all_offsets, all_sizes = offsets.reshape(-1), sizes.reshape(-1)
        url_index = file_number.reshape(-1)
        url_index[all_sizes == 0] = -1  # sparse tiles: no data
        return fids, url_index, all_offsets, all_sizes
    # Steps without a file (or files out of order): place each file's tiles at its step.
    grid = ChunkGrid.of(shape, chunks)
    columns = ReferenceColumns.empty(grid.n_chunks)
    tile_range = np.arange(sizes.shape[1])
    target = stacked_numbers(grid, 0, steps[:, None], (1, *grid.counts[1:]), tile_range[None, :])
    columns.place(target, np.where(sizes > 0, file_number, np.int32(-1)), offsets, sizes)
    return fids, columns.url_index, columns.offsets, columns.sizes


def _level_attributes(name: str, full: dict[str, Any], level: dict[str, Any], variable: Variable, is_mask: bool,
                      dtype: str, notes: list[str]) -> tuple[Any, dict[str, Any]]:
    """(fill value, attributes) of one level's array: the TIFF's own, nodata,
    scale, offset, CRS and georeferencing notes, then the recipe's."""
    nodata = None if is_mask else full["nodata"]
    kind = storage_dtype(dtype).kind
    if nodata is not None and not _fits(nodata, dtype):
        # GDAL ignores such a nodata value too.
        notes.append(f"{name}: nodata {nodata:g} does not fit {level['dtype']}; ignored")
        nodata = None
    # No nodata, no fill value: GDAL then reports none, as on the source, and
    # xarray masks nothing (a chunk with no data still reads as 0, as GDAL
    # reads a sparse tile).
    fill: Any = nodata
    if fill is not None and kind in "iu":
        fill = int(fill)
    elif kind == "c":
        fill = None  # Zarr v2 has no JSON form of a complex fill value GDAL reads; 0 either way
    attrs: dict[str, Any] = tiff_attributes(full, level, is_mask)
    if nodata is not None:
        attrs["_FillValue"] = fill
    if full["scale"] is not None:
        attrs["scale_factor"] = full["scale"]
    if full["offset"] is not None:
        attrs["add_offset"] = full["offset"]
    if full["units"] and not is_mask:
        attrs["units"] = full["units"]
    if full["description"] and not is_mask:
        # GDAL's netCDF driver maps a band description to long_name too.
        attrs["long_name"] = full["description"]
    crs_attr = _crs_attribute(full["crs"])
    if crs_attr:
        attrs["_CRS"] = crs_attr
    gt = full["geotransform"]
    if gt is not None and (gt[2] != 0 or gt[4] != 0):
        attrs["chunkindex_geotransform"] = gt
    if full["georef_note"]:
        attrs["chunkindex_georeferencing_note"] = full["georef_note"]
    attrs.update(variable.attributes)
    return fill, attrs


def _level_space(full: dict[str, Any], level: dict[str, Any], suffix: str,
                 coordinate_arrays: dict[str, ArraySpec], prefix: str = "") -> tuple[str, str]:
    """(y, x) dimension names of one level; its lat/lon (or y/x) coordinates
    join `coordinate_arrays` when the file is georeferenced without rotation."""
    gt = full["geotransform"]
    if gt is None or gt[2] != 0 or gt[4] != 0:
        return f"y{suffix}", f"x{suffix}"
    geographic = bool(full["crs"]) and bool(full["geographic"])  # lat/lon names need a known CRS
    level_gt = [gt[0], gt[1] * full["width"] / level["width"], 0.0,
                gt[3], 0.0, gt[5] * full["height"] / level["height"]]
    (y_dim, x_dim), coords = spatial_coordinates(level_gt, level["width"], level["height"], geographic, suffix)
    group = prefix + level_group(suffix)
    for coord in coords:
        # An overview's coordinates live in its group; their dimension names
        # differ from the root's (xarray's DataTree aligns same-named dimensions).
        coordinate_arrays.setdefault(group + coord.name, dataclasses.replace(coord, name=group + coord.name))
    return y_dim, x_dim


def grid_groups(levels: pa.Table, file_ids: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Files grouped by the grid of their full-resolution image (CRS,
    geotransform or GCPs, size), each group named after it:
    `EPSG32755_699960_6300040` (CRS and upper-left corner), `<crs>_gcp` for a
    GCP scene, `<crs>_nogeo` without georeferencing; `_2`, `_3` where two
    grids would share a name. Groups in the order of their first file."""
    images = levels.filter(pc.and_(pc.is_in(levels["file_id"], pa.array(file_ids, pa.int32())),
                                   pc.equal(levels["kind"], "image")))
    rows = images.select(["file_id", "crs", "geotransform", "width", "height", "gcps"]).to_pylist()
    keys: dict[tuple, list[int]] = {}
    for row in rows:  # one per file
        gt = row["geotransform"]
        key = (row["crs"], tuple(round(v, 9) for v in gt) if gt else None, row["width"], row["height"],
               tuple(row["gcps"] or ()) if not gt else ())
        keys.setdefault(key, []).append(row["file_id"])
    names: list[tuple[str, np.ndarray]] = []
    used: set[str] = set()
    for (crs, gt, _, _, gcps), ids in keys.items():
        token = "".join(ch for ch in (crs or "nocrs") if ch.isalnum()) if (crs or "").startswith("EPSG:") or not crs \
            else f"crs{hashlib.sha256(crs.encode()).hexdigest()[:8]}"
        name = f"{token}_{gt[0]:.10g}_{gt[3]:.10g}" if gt else f"{token}_{'gcp' if gcps else 'nogeo'}"
        base, k = name, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        names.append((name, np.array(sorted(ids), np.int64)))
    return names


def _variable_arrays(recipe: Recipe, variable: Variable, manifest: pa.Table, levels: pa.Table, urls: dict[int, str],
                     tiles: _Tiles, times_all: np.ndarray, has_time: bool, result: AssembledIndex,
                     coordinate_arrays: dict[str, ArraySpec], files: np.ndarray | None = None,
                     prefix: str = "") -> None:
    """The arrays of one variable (full resolution, overviews, mask) stacked
    along time; with `files`, of those files only, in group `prefix`."""
    var_rows = manifest.filter(pc.equal(manifest["variable"], variable.name))
    if files is not None:
        var_rows = var_rows.filter(pc.is_in(var_rows["file_id"], pa.array(files, pa.int32())))
    if var_rows.num_rows == 0:
        raise LayoutMismatch(f"recipe {recipe.id}: no file lists variable {variable.name!r}")
    file_ids = var_rows["file_id"].to_numpy()
    if files is not None and has_time:
        times = var_rows["time"].to_numpy(zero_copy_only=False)
        order = np.argsort(times, kind="stable")
        same = np.flatnonzero(times[order][1:] == times[order][:-1])
        if same.size:
            a, b = file_ids[order][same[0]], file_ids[order][same[0] + 1]
            raise LayoutMismatch(f"recipe {recipe.id}: {urls[int(a)]} and {urls[int(b)]} lie on one grid "
                                 f"({prefix.rstrip('/')}) at the same time {times[order][same[0]]}")
    var_levels = levels.drop_columns(["tile_offsets", "tile_byte_counts"])
    var_levels = var_levels.filter(pc.is_in(var_levels["file_id"], pa.array(file_ids, pa.int32())))
    var_levels = check_layouts(var_levels, urls, int(file_ids[0]), recipe.source.on_mismatch, result.skipped_files)
    kept = np.unique(var_levels["file_id"].to_numpy())
    in_variable = np.isin(tiles.file_id, kept)
    file_time_index, n_times = _time_steps(var_rows, kept, times_all, has_time)
    first = levels.filter(pc.equal(levels["file_id"], int(kept[0]))).to_pylist()
    full = first[0]
    for level in first:
        is_mask = level["kind"] == "mask"
        factor = round(full["width"] / level["width"])
        if factor != 1 and not recipe.output.overviews:
            continue
        suffix = "" if factor == 1 else f"_ovr{factor}"
        # An internal mask IFD (GDAL's per-dataset mask) is a variable of its own.
        name = prefix + level_group(suffix) + variable.name + ("_mask" if is_mask else "")
        y_dim, x_dim = _level_space(full, level, suffix, coordinate_arrays, prefix)
        dims, shape, chunks, x_axis = _chunk_layout(level, n_times, y_dim, x_dim, recipe.concat.dim)
        dtype = "|u1" if is_mask else level["dtype"]
        chain = tiff_chain(level["compression"], level["predictor"], dtype, chunks, x_axis, level["jpeg_tables"],
                           level["photometric"], level["lerc_parameters"], urls[int(kept[0])], bits=level["bits"])
        fids, offsets, sizes = tiles.level(in_variable, level["ifd"], len(level["tile_offsets"]))
        steps = np.fromiter((file_time_index[int(f)] for f in fids), dtype=np.int64, count=fids.size)
        fids, url_index, all_offsets, all_sizes = _chunk_references(fids, offsets, sizes, steps, shape, chunks)
        fill, attrs = _level_attributes(name, full, level, variable, is_mask, dtype, result.notes)
        attrs["chunkindex"] = {
            "source_format": "cog", "ifd": level["ifd"], "overview_factor": factor,
            **({"mask": True} if is_mask else {}),
            "codec": chain.as_attribute(), "gdal_decodable": chain.gdal_decodable,
        }
        short = {"y": y_dim, "x": x_dim}
        short_dims = tuple(short[a] for a in (level["short_edges"] or "").split(",") if a)
        array = ArraySpec(name=name, dims=dims, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill,
                          chain=chain, attrs=attrs, urls=[urls[int(f)] for f in fids], url_index=url_index,
                          offsets=all_offsets, sizes=all_sizes, short_edge_dims=short_dims,
                          spatial_dims=(y_dim, x_dim))
        result.add_data_array(array, recipe.output.gdal_readable_variant)


def assemble_cog(recipe: Recipe, manifest: pa.Table, levels: pa.Table) -> AssembledIndex:
    """Arrays (data, overviews, masks, GDAL-openable variants, coordinates) of a COG archive.

    Args:
        recipe: the recipe (variables, concat dimension and units, overviews, on_mismatch).
        manifest: the listing (one row per file, with its time).
        levels: every file's TIFF levels (`read_batch`), concatenated.

    Returns:
        The assembled arrays, with notes and the files skipped.

    Raises:
        LayoutMismatch: a file whose layout differs from its variable's first file
            (unless `source.on_mismatch: skip`).
    """
    result = AssembledIndex(arrays=[])
    urls = dict(zip(manifest["file_id"].to_pylist(), manifest["url"].to_pylist()))
    times_all = manifest["time"].to_numpy(zero_copy_only=False)
    has_time = not np.isnat(times_all).all()
    coordinate_arrays: dict[str, ArraySpec] = {}
    with ThreadPoolExecutor(max_workers=1) as gather_pool:  # one gather beside the main thread's
        tiles = _Tiles(levels["ifd"].to_numpy(), levels["file_id"].to_numpy(), _TileColumns(levels["tile_offsets"]),
                       _TileColumns(levels["tile_byte_counts"]), gather_pool)
        for variable in recipe.variables:
            if recipe.source.group_by == "grid":
                var_files = manifest.filter(pc.equal(manifest["variable"], variable.name))["file_id"].to_numpy()
                for group, files in grid_groups(levels, var_files):
                    _variable_arrays(recipe, variable, manifest, levels, urls, tiles, times_all, has_time, result,
                                     coordinate_arrays, files, group + "/")
                continue
            _variable_arrays(recipe, variable, manifest, levels, urls, tiles, times_all, has_time, result,
                             coordinate_arrays)
    if has_time:
        units = recipe.concat.units or "days since 1970-01-01"
        coordinate_arrays[recipe.concat.dim] = time_coordinate(
            recipe.concat.dim, np.unique(times_all.astype("datetime64[us]")), units, recipe.concat.calendar)
    result.arrays.extend(coordinate_arrays.values())
    return result
