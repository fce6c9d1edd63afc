"""TEMPORARY test helper: small CRI indexes (docs/spec/cri-parquet.md) for the
CRI driver tests, written with pyarrow straight from a TIFF's tags (tifffile)
or an HDF5/NetCDF file's chunk table (h5py chunk_iter).

This stands in for the project's CRI writer (chunkindex/indexes/flat.py, being
written on branch `flat`) until it lands on main; the tests then switch to it
and this file goes. It covers only what the driver tests need, and is not
vectorised (test files have few chunks).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

TIFF_CODECS = {1: None, 5: "lzw", 8: "deflate", 32946: "deflate", 32773: "packbits",
               34925: "lzma", 50000: "zstd", 7: "jpeg", 50001: "webp", 34887: "lerc"}


def _dtype_str(dtype: np.dtype) -> str:
    d = np.dtype(dtype)
    return ("|" if d.itemsize == 1 else d.byteorder.replace("=", "<")) + d.kind + str(d.itemsize)


def _tiff_codec(page, dtype: np.dtype) -> list[dict]:
    comp = int(page.compression)
    if comp not in TIFF_CODECS:
        raise ValueError(f"test helper: TIFF compression {comp} not mapped")
    name = TIFF_CODECS[comp]
    chain: list[dict] = []
    if name == "jpeg":
        step = {"name": "jpeg", "bits": int(page.bitspersample)}
        tables = page.jpegtables
        if tables:
            step["tables"] = base64.b64encode(bytes(tables)).decode()
        photometric = int(page.photometric)
        step["colorspace"] = {6: "YCbCr", 2: "RGB", 1: "GRAY", 0: "GRAY", 5: "CMYK"}.get(photometric, "GRAY")
        chain.append(step)
    elif name is not None:
        chain.append({"name": name})
    predictor = int(page.predictor)
    if predictor in (2, 3):
        samples = int(page.samplesperpixel) if int(page.planarconfig) == 1 else 1
        chain.append({"name": "tiff_predictor", "predictor": predictor, "samples": samples})
    return chain


def cri_from_tiff(tif: Path, out: Path, *, variable: str = "band_data", dictionary: bool = False,
                  base_url: str | None = None) -> Path:
    """Write `out` (a .cri.parquet) indexing every image and overview IFD of `tif`."""
    import tifffile
    from osgeo import gdal

    ds = gdal.Open(str(tif))
    gt = list(ds.GetGeoTransform(can_return_null=True) or []) or None
    srs = ds.GetSpatialRef()
    band1 = ds.GetRasterBand(1)
    nodata = band1.GetNoDataValue()
    scale, offset = band1.GetScale(), band1.GetOffset()
    ds = None

    rows: dict[str, list] = {k: [] for k in ("level", "c0", "c1", "c2", "path", "offset", "length")}
    levels = []
    with tifffile.TiffFile(tif) as tf:
        pages = [p for p in tf.pages if not (int(p.subfiletype) & 4)]  # masks are not data
        first = pages[0]
        spp = int(first.samplesperpixel)
        planar = int(first.planarconfig)
        image_codec = _tiff_codec(first, first.dtype)
        decoded_native = image_codec and image_codec[0]["name"] in ("jpeg", "webp", "lerc")
        dtype = np.dtype(first.dtype).newbyteorder("<" if tf.byteorder == "<" or decoded_native else ">")
        if spp == 1:
            dims = ["y", "x"]
        elif planar == 1:
            dims = ["y", "x", "band"]
        else:
            dims = ["band", "y", "x"]
        for lvl, page in enumerate(pages):
            h, w = int(page.imagelength), int(page.imagewidth)
            tiled = page.is_tiled
            th = int(page.tilelength) if tiled else int(page.rowsperstrip or h)
            th = min(th, h) if not tiled else th
            tw = int(page.tilewidth) if tiled else w
            ny, nx = -(-h // th), -(-w // tw)
            offsets = page.dataoffsets
            counts = page.databytecounts
            if spp == 1:
                shape, chunk = [h, w], [th, tw]
            elif planar == 1:
                shape, chunk = [h, w, spp], [th, tw, spp]
            else:
                shape, chunk = [spp, h, w], [1, th, tw]
            for i, (o, n) in enumerate(zip(offsets, counts, strict=True)):
                if n == 0:
                    continue  # sparse: no row, reads as fill
                plane, rest = divmod(i, ny * nx)
                cy, cx = divmod(rest, nx)
                coords = [cy, cx] if spp == 1 else ([cy, cx, 0] if planar == 1 else [plane, cy, cx])
                rows["level"].append(lvl)
                for j, c in enumerate(coords):
                    rows[f"c{j}"].append(c)
                for j in range(len(coords), 3):
                    rows[f"c{j}"].append(None)
                rows["path"].append(tif.name)
                rows["offset"].append(int(o))
                rows["length"].append(int(n))
            entry = {"level": lvl, "shape": shape, "chunk_shape": chunk,
                     "codec": _tiff_codec(page, page.dtype)}
            if gt is not None:
                fx = first.imagewidth / w
                fy = first.imagelength / h
                entry["geotransform"] = [gt[0], gt[1] * fx, gt[2] * fy, gt[3], gt[4] * fx, gt[5] * fy]
            levels.append(entry)
        shape0 = levels[0]["shape"]
    attrs = {}
    if nodata is not None:
        attrs["_FillValue"] = "NaN" if np.isnan(nodata) else (int(nodata) if dtype.kind in "iu" else nodata)
    if scale not in (None, 1.0):
        attrs["scale_factor"] = scale
    if offset not in (None, 0.0):
        attrs["add_offset"] = offset
    dimensions = {
        "y": {"size": shape0[dims.index("y")], "type": "HORIZONTAL_Y", "from_geotransform": gt is not None},
        "x": {"size": shape0[dims.index("x")], "type": "HORIZONTAL_X", "from_geotransform": gt is not None},
    }
    if "band" in dims:
        dimensions["band"] = {"size": spp, "values": list(range(1, spp + 1))}
    meta = {
        "cri_version": "0.1",
        "arrays": {variable: {
            "dims": dims, "dtype": _dtype_str(dtype),
            "fill_value": attrs.get("_FillValue", 0),
            "attrs": attrs, "levels": levels,
            "short_edge_dims": ["y"] if not first.is_tiled else ["y", "x"],
            "band_dim": "band" if "band" in dims else None, "role": "data"}},
        "dimensions": dimensions,
    }
    meta["base"] = base_url if base_url is not None else tif.parent.resolve().as_posix() + "/"
    if srs is not None:
        meta["crs"] = {"wkt": srs.ExportToWkt(["FORMAT=WKT2_2019"])}
    return _write(out, variable, rows, meta, dictionary=dictionary)


def _write(out: Path, variable: str, rows: dict[str, list], meta: dict, *, dictionary: bool,
           ncols: int = 3, raw: list | None = None) -> Path:
    n = len(rows["level"])
    order = sorted(range(n), key=lambda i: (rows["level"][i],) + tuple(
        -1 if rows[f"c{j}"][i] is None else rows[f"c{j}"][i] for j in range(ncols)))
    variables = rows.get("variable") or [variable] * n
    var_type = pa.dictionary(pa.int32(), pa.string()) if dictionary else pa.string()
    cols = {
        "variable": pa.array([variables[i] for i in order], pa.string()).cast(var_type),
        "level": pa.array([rows["level"][i] for i in order], pa.int32()),
    }
    for j in range(ncols):
        cols[f"c{j}"] = pa.array([rows[f"c{j}"][i] for i in order], pa.int32())
    cols["path"] = pa.array([rows["path"][i] for i in order], pa.string())
    cols["offset"] = pa.array([rows["offset"][i] for i in order], pa.int64())
    cols["length"] = pa.array([rows["length"][i] for i in order], pa.int64())
    cols["raw"] = pa.array([raw[i] if raw else None for i in order], pa.binary())
    table = pa.table(cols).replace_schema_metadata({"cri": json.dumps(meta)})
    pq.write_table(table, out, row_group_size=4096, write_statistics=True)
    return out


H5_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 32015: "zstd", 32004: "lz4", 32001: "blosc"}


def cri_from_hdf5(path: Path, out: Path) -> Path:
    """Write `out` indexing every chunked (or contiguous) numeric dataset of an
    HDF5/NetCDF4 file, with dimension-scale coordinates as `values`."""
    import h5py

    arrays: dict[str, dict] = {}
    dimensions: dict[str, dict] = {}
    rows: dict[str, list] = {k: [] for k in ("variable", "level", "path", "offset", "length", "skip")}
    maxdims = 0
    with h5py.File(path, "r") as f:
        dsets = [(name, obj) for name, obj in f.items() if isinstance(obj, h5py.Dataset)]
        for name, d in dsets:
            if d.ndim == 0 or d.dtype.kind not in "iuf" or d.attrs.get("CLASS") == b"DIMENSION_SCALE":
                continue
            dimnames = []
            for k, dim in enumerate(d.dims):
                if len(dim):
                    dimnames.append(os.path.basename(dim[0].name))
                else:
                    dimnames.append(f"{name}_dim{k}")
            for k, dn in enumerate(dimnames):
                if dn not in dimensions:
                    entry = {"size": int(d.shape[k])}
                    if dn in f and f[dn].ndim == 1:
                        scale = f[dn]
                        entry["values"] = [float(v) for v in scale[()]]
                        for attr in ("units", "calendar", "standard_name", "long_name", "positive", "axis"):
                            if attr in scale.attrs:
                                v = scale.attrs[attr]
                                entry[attr] = v.decode() if isinstance(v, bytes) else str(v)
                        units = entry.get("units", "")
                        if " since " in units:
                            entry["type"] = "TEMPORAL"
                        elif entry.get("axis") == "Z" or entry.get("positive"):
                            entry["type"] = "VERTICAL"
                        elif dn.startswith(("lat", "y")) or entry.get("axis") == "Y":
                            entry["type"] = "HORIZONTAL_Y"
                        elif dn.startswith(("lon", "x")) or entry.get("axis") == "X":
                            entry["type"] = "HORIZONTAL_X"
                    dimensions[dn] = entry
            chunks = d.chunks or d.shape
            plist = d.id.get_create_plist()
            filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
            chain = []
            for fid, _flags, _vals, _name in reversed(filters):
                if fid not in H5_FILTERS:
                    raise ValueError(f"test helper: HDF5 filter {fid} not mapped")
                step = {"name": H5_FILTERS[fid]}
                if fid == 2:
                    step["element_size"] = d.dtype.itemsize
                if fid == 32004:
                    step["framing"] = "hdf5"
                chain.append(step)
            fill = d.fillvalue
            attrs = {}
            for k, v in d.attrs.items():
                if k in ("DIMENSION_LIST", "_Netcdf4Dimid", "_Netcdf4Coordinates", "CLASS", "NAME",
                         "REFERENCE_LIST"):
                    continue
                if isinstance(v, bytes):
                    attrs[k] = v.decode()
                elif (isinstance(v, np.ndarray) and v.size == 1) or isinstance(v, np.generic):
                    attrs[k] = v.item()
                elif isinstance(v, str):
                    attrs[k] = v
            if "_FillValue" in attrs and isinstance(attrs["_FillValue"], float) and np.isnan(attrs["_FillValue"]):
                attrs["_FillValue"] = "NaN"
            arrays[name] = {
                "dims": dimnames, "dtype": _dtype_str(d.dtype),
                "fill_value": ("NaN" if isinstance(fill, float) and np.isnan(fill) else np.asarray(fill).item()),
                "attrs": attrs,
                "levels": [{"level": 0, "shape": list(d.shape), "chunk_shape": list(chunks), "codec": chain}],
            }
            maxdims = max(maxdims, d.ndim)
            if d.chunks is None:
                off = d.id.get_offset()
                if off is None:
                    continue
                key_rows = [((0,) * d.ndim, off, d.id.get_storage_size(), 0)]
            else:
                key_rows = []
                nfilters = len(filters)

                def add(info, chunks=chunks, key_rows=key_rows, nf=nfilters):
                    # HDF5's filter mask counts pipeline (encode) steps; `skip`
                    # counts decode steps, the reverse order.
                    skip = sum(1 << (nf - 1 - i) for i in range(nf) if info.filter_mask >> i & 1)
                    idx = tuple(o // c for o, c in zip(info.chunk_offset, chunks, strict=True))
                    key_rows.append((idx, info.byte_offset, info.size, skip))

                d.id.chunk_iter(add)
            for idx, off, size, skip in key_rows:
                rows["skip"].append(skip or None)
                rows["variable"].append(name)
                rows["level"].append(0)
                rows["path"].append(path.name)
                rows["offset"].append(int(off))
                rows["length"].append(int(size))
                for j in range(16):
                    rows.setdefault(f"c{j}", []).append(idx[j] if j < len(idx) else None)
    meta = {"cri_version": "0.1", "base": path.parent.resolve().as_posix() + "/", "arrays": arrays,
            "dimensions": dimensions}
    n = len(rows["level"])
    for j in range(maxdims):
        rows.setdefault(f"c{j}", [None] * n)
    # Sort by (variable, level, c...).
    order = sorted(range(n), key=lambda i: (rows["variable"][i], rows["level"][i]) + tuple(
        rows[f"c{j}"][i] if rows[f"c{j}"][i] is not None else -1 for j in range(maxdims)))
    cols = {"variable": pa.array([rows["variable"][i] for i in order], pa.string()),
            "level": pa.array([rows["level"][i] for i in order], pa.int32())}
    for j in range(maxdims):
        cols[f"c{j}"] = pa.array([rows[f"c{j}"][i] for i in order], pa.int32())
    cols["path"] = pa.array([rows["path"][i] for i in order], pa.string())
    cols["offset"] = pa.array([rows["offset"][i] for i in order], pa.int64())
    cols["length"] = pa.array([rows["length"][i] for i in order], pa.int64())
    cols["raw"] = pa.nulls(n, pa.binary())
    if any(rows["skip"]):
        cols["skip"] = pa.array([rows["skip"][i] for i in order], pa.int32())
    table = pa.table(cols).replace_schema_metadata({"cri": json.dumps(meta)})
    pq.write_table(table, out, row_group_size=4096, write_statistics=True)
    return out


def cri_from_tiff_series(tifs: list[Path], times: list[float], out: Path, *, variable: str,
                         time_units: str = "days since 1970-01-01", row_group_size: int = 65536) -> Path:
    """Write `out` indexing a time series of TIFFs of one layout (single band)
    as `variable[time, y, x]`, every level; columns built with numpy."""
    import tifffile
    from osgeo import gdal

    ds = gdal.Open(str(tifs[0]))
    gt = list(ds.GetGeoTransform())
    srs = ds.GetSpatialRef()
    b = ds.GetRasterBand(1)
    nodata, scale, offset = b.GetNoDataValue(), b.GetScale(), b.GetOffset()
    ds = None
    base = Path(os.path.commonpath([t.parent for t in tifs]))
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("level", "c0", "c1", "c2", "path", "offset", "length")}
    levels = []
    for ti, tif in enumerate(tifs):
        with tifffile.TiffFile(tif) as tf:
            pages = [p for p in tf.pages if not (int(p.subfiletype) & 4)]
            for lvl, page in enumerate(pages):
                h, w = int(page.imagelength), int(page.imagewidth)
                th, tw = int(page.tilelength), int(page.tilewidth)
                nx = -(-w // tw)
                offs = np.asarray(page.dataoffsets, np.int64)
                cnts = np.asarray(page.databytecounts, np.int64)
                keep = cnts > 0
                idx = np.nonzero(keep)[0]
                cols["level"].append(np.full(idx.size, lvl, np.int32))
                cols["c0"].append(np.full(idx.size, ti, np.int32))
                cols["c1"].append((idx // nx).astype(np.int32))
                cols["c2"].append((idx % nx).astype(np.int32))
                cols["path"].append(np.full(idx.size, ti, np.int32))
                cols["offset"].append(offs[keep])
                cols["length"].append(cnts[keep])
                if ti == 0:
                    fx, fy = pages[0].imagewidth / w, pages[0].imagelength / h
                    dtype = np.dtype(page.dtype).newbyteorder(tf.byteorder)
                    levels.append({"level": lvl, "shape": [len(tifs), h, w], "chunk_shape": [1, th, tw],
                                   "codec": _tiff_codec(page, page.dtype),
                                   "geotransform": [gt[0], gt[1] * fx, 0.0, gt[3], 0.0, gt[5] * fy]})
    c = {k: np.concatenate(v) for k, v in cols.items()}
    order = np.lexsort((c["c2"], c["c1"], c["c0"], c["level"]))
    names = [t.relative_to(base).as_posix() for t in tifs]
    path_col = pa.DictionaryArray.from_arrays(pa.array(c["path"][order]), pa.array(names)).cast(pa.string())
    n = order.size
    table = pa.table({
        "variable": pa.array([variable] * 1, pa.string()).take(pa.array(np.zeros(n, np.int64))),
        "level": pa.array(c["level"][order]), "c0": pa.array(c["c0"][order]),
        "c1": pa.array(c["c1"][order]), "c2": pa.array(c["c2"][order]), "path": path_col,
        "offset": pa.array(c["offset"][order]), "length": pa.array(c["length"][order]),
        "raw": pa.nulls(n, pa.binary())})
    attrs = {}
    if nodata is not None:
        attrs["_FillValue"] = int(nodata) if dtype.kind in "iu" else nodata
    if scale not in (None, 1.0):
        attrs["scale_factor"] = scale
    if offset not in (None, 0.0):
        attrs["add_offset"] = offset
    meta = {
        "cri_version": "0.1", "base": base.resolve().as_posix() + "/",
        "arrays": {variable: {"dims": ["time", "y", "x"], "dtype": _dtype_str(dtype),
                              "fill_value": attrs.get("_FillValue", 0), "attrs": attrs, "levels": levels}},
        "dimensions": {
            "time": {"size": len(tifs), "type": "TEMPORAL", "units": time_units, "calendar": "standard",
                     "values": [float(t) for t in times]},
            "y": {"size": levels[0]["shape"][1], "type": "HORIZONTAL_Y", "from_geotransform": True},
            "x": {"size": levels[0]["shape"][2], "type": "HORIZONTAL_X", "from_geotransform": True}},
    }
    if srs is not None:
        meta["crs"] = {"wkt": srs.ExportToWkt(["FORMAT=WKT2_2019"])}
    table = table.replace_schema_metadata({"cri": json.dumps(meta)})
    pq.write_table(table, out, row_group_size=row_group_size, write_statistics=True)
    return out
