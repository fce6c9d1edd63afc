"""Issue 16 §2: what GDAL reports on the index equals what it reports on a
source file, for every fixture archive (GHRSST with both codecs, BRAN, each
edge-case TIFF the indexer accepts).

Each side is reduced to a table of facts (data type, nodata, scale, offset,
unit, SRS, geotransform, dimension names and types, coordinates, time
values, band description, colour interpretation, CF attributes). Facts must
be equal, except those listed in BY_DESIGN with the reason; a by-design
difference that disappears fails the test too, so the list stays true.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from client_support import EDGE_TIFFS, bran_files, cog_files, metadata

# fact -> why the index cannot (or should not) report what the source does.
BY_DESIGN_COG = {
    "color_interp": "GDAL's Zarr driver has no colour interpretation: a band of a Zarr array is Undefined "
                    "(the source's Gray/RGB is not carried)",
    "description": "GDAL's classic view of a Zarr array names no band; the source's band description is "
                   "kept as the array's `long_name` attribute (fact `long_name` below)",
    "overview_count": "overviews are separate arrays `<name>_ovr<f>` (GDAL's Zarr v2 reader has no overview "
                      "concept); each is compared with the source overview of the same size",
}
BY_DESIGN_COG_MD = {
    "dim_names": "the index names its dimensions (time, lat, lon) or (time, y, x) as CF does; GDAL's view of "
                 "a GeoTIFF band names them Y, X",
    "dims_time": "the index stacks files along time; a source file has no time dimension",
}
BY_DESIGN_BRAN = {
    "attr:positive": "GDAL's Zarr driver turns `positive` into the dimension's direction (DOWN, compared as "
                     "`dim_direction`) and drops the attribute; the netCDF driver keeps both",
    "attr:chunkindex": "chunkindex's own attribute (true codec chain, readers, source); not in the source",
    "attr:missing_value": "GDAL's netCDF driver turns missing_value into the nodata value and does not list it; "
                          "GDAL's Zarr driver lists the attribute (the nodata value is equal: `nodata` fact)",
    "attr:standard_name:coords": "the index adds the CF standard_name (latitude, longitude, time) that GDAL's "
                                 "Zarr driver needs to type a dimension; the Zarr driver consumes it, so "
                                 "it is not listed (the netCDF driver infers types from units instead)",
}


# ---------------------------------------------------------------- COG ----


def classic_facts(ds: Any) -> dict[str, Any]:
    """What GDAL's classic raster API reports on a dataset and its first band."""
    band = ds.GetRasterBand(1)
    srs = ds.GetSpatialRef()
    return {
        "size": (ds.RasterXSize, ds.RasterYSize, ds.RasterCount),
        "data_type": band.DataType,
        "nodata": band.GetNoDataValue(),
        "scale": band.GetScale(),
        "offset": band.GetOffset(),
        "unit": band.GetUnitType(),
        "srs": srs.ExportToWkt(["FORMAT=WKT2_2019"]) if srs is not None else None,
        "geotransform": tuple(round(v, 9) for v in ds.GetGeoTransform()),
        "block_size": tuple(band.GetBlockSize()),
        "color_interp": [ds.GetRasterBand(b + 1).GetColorInterpretation() for b in range(ds.RasterCount)],
        "description": [ds.GetRasterBand(b + 1).GetDescription() for b in range(ds.RasterCount)],
        "overview_count": band.GetOverviewCount(),
    }


def srs_same(a: str | None, b: str | None) -> bool:
    from osgeo import osr

    if a is None or b is None:
        return a is b
    sa, sb = osr.SpatialReference(wkt=a), osr.SpatialReference(wkt=b)
    return bool(sa.IsSame(sb))


def compare(source: dict[str, Any], index: dict[str, Any], by_design: dict[str, str], label: str) -> list[str]:
    """Facts that differ, checked against the by-design list (both ways)."""
    assert source.keys() == index.keys(), label
    differ = []
    for key, value in source.items():
        same = srs_same(value, index[key]) if key == "srs" else _equal(value, index[key])
        if not same:
            differ.append(key)
    unexplained = [f"{k}: source {source[k]!r} / index {index[k]!r}" for k in differ if k not in by_design]
    assert not unexplained, f"{label}: " + "; ".join(unexplained)
    return differ


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def classic_index_view(gdal, index: Path, name: str, time_index: int = 0):
    return gdal.Open(f'ZARR:"{index}":/{name}:{time_index}')


def md_facts_of_band(band: Any) -> dict[str, Any]:
    """GDAL's multidimensional view of a classic band (GDALRasterBand::AsMDArray)."""
    return md_array_facts(band.AsMDArray(), drop_dims=())


def md_array_facts(arr: Any, drop_dims: tuple[str, ...]) -> dict[str, Any]:
    dims = [d for d in arr.GetDimensions() if d.GetName() not in drop_dims]
    srs = arr.GetSpatialRef()
    facts: dict[str, Any] = {
        "dim_names": [d.GetName() for d in dims],
        "dim_types": [d.GetType() for d in dims],
        "data_type": arr.GetDataType().GetNumericDataType(),
        "nodata": arr.GetNoDataValueAsDouble() if arr.GetNoDataValueAsRaw() is not None else None,
        "scale": arr.GetScale(),
        "offset": arr.GetOffset(),
        "unit": arr.GetUnit(),
        "srs": srs.ExportToWkt(["FORMAT=WKT2_2019"]) if srs is not None else None,
    }
    for d in dims:
        var = d.GetIndexingVariable()
        facts[f"coords:{d.GetType() or d.GetName()}"] = (
            np.round(var.ReadAsArray(), 9) if var is not None else None)
    return facts


def cog_cases(fixtures_root: Path, demo_indexes: dict[str, Path], edge_indexes: dict[str, Path]):
    """(label, source file, index, array name, time index) of every COG fixture archive."""
    for dataset, fixture_set in (("ghrsst-demo", "ghrsst-zstd-pred2"), ("ghrsst-demo-deflate", "ghrsst-deflate-pred1")):
        index = demo_indexes[dataset]
        for variable in ("analysed_sst", "mask"):
            files = cog_files(fixtures_root, fixture_set, variable)
            name = _gdal_array(index, variable)
            yield f"{dataset}:{variable}", files[2], index, name, 2
    for tif, index in edge_indexes.items():
        yield f"edge:{tif}", fixtures_root / "edge-cases" / "tiff" / tif, index, _gdal_array(index, "data"), 0


def _gdal_array(index: Path, variable: str) -> str:
    """The full-resolution array GDAL reads metadata from: the array itself, or
    its references-only variant where GDAL cannot decode the chain."""
    return f"refs_only/{variable}" if f"refs_only/{variable}/.zarray" in metadata(index) else variable


def test_cog_archives_classic_view(fixtures_root, demo_indexes, edge_indexes, gdal):
    table = []
    for label, source_path, index, name, t in cog_cases(fixtures_root, demo_indexes, edge_indexes):
        if gdal.Open(str(source_path)).RasterCount != 1:
            # By design: GDAL's classic view of a (time, y, x, band) array is one band per
            # subdataset (ZARR:"…":/data:<t>:<b>); the multidimensional test covers them.
            continue
        source = classic_facts(gdal.Open(str(source_path)))
        view = classic_index_view(gdal, index, name, t)
        got = classic_facts(view)
        differ = compare(source, got, BY_DESIGN_COG, label)
        table.append((label, sorted(set(source) - set(differ)), differ))
        # The band description survives as the array's long_name.
        source_ds = gdal.Open(str(source_path))
        description = source_ds.GetRasterBand(1).GetDescription()
        if description:
            assert metadata(index)[f"{name.removeprefix('refs_only/')}/.zattrs"].get("long_name") == description, label
    for label, matched, differ in table:
        assert {"data_type", "nodata", "scale", "offset", "unit", "srs", "geotransform"} <= set(matched), (label, differ)


def test_cog_archives_multidimensional_view(fixtures_root, demo_indexes, edge_indexes, gdal):
    for label, source_path, index, name, _t in cog_cases(fixtures_root, demo_indexes, edge_indexes):
        src = gdal.Open(str(source_path))
        if src.RasterCount != 1:
            continue  # a multi-band source has no single multidimensional array to compare with
        source = md_facts_of_band(src.GetRasterBand(1))
        opened = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER)  # kept open while its arrays are used
        arr = opened.GetRootGroup().OpenMDArrayFromFullname("/" + name)
        got = md_array_facts(arr, drop_dims=(arr.GetDimensions()[0].GetName(),))
        got_dims = arr.GetDimensions()
        if label.startswith("ghrsst"):  # a single edge-case file has no time values: its axis stays untyped
            assert got_dims[0].GetType() == "TEMPORAL", f"{label}: the stacking dimension is typed TEMPORAL"
        differ = compare(source, got, BY_DESIGN_COG_MD, label)
        assert "dim_types" not in differ and "coords:HORIZONTAL_X" not in differ, (label, differ)
        # Time values: one per file, from the file names.
        time = got_dims[0].GetIndexingVariable()
        if label.startswith("ghrsst"):
            days = time.ReadAsArray()
            assert [dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in days] == [
                dt.date(2024, 1, 30) + dt.timedelta(days=i) for i in range(4)]
            assert time.GetUnit() == "days since 1970-01-01"


# --------------------------------------------------------------- BRAN ----


def bran_facts(gdal, arr: Any, files_time: np.ndarray | None = None) -> dict[str, Any]:
    facts = md_array_facts(arr, drop_dims=())
    facts["dim_directions"] = [d.GetDirection() for d in arr.GetDimensions()]
    facts["block_size"] = arr.GetBlockSize()
    for attr in arr.GetAttributes():
        facts[f"attr:{attr.GetName()}"] = attr.Read()
    for d in arr.GetDimensions():
        var = d.GetIndexingVariable()
        if var is None:
            continue
        facts[f"unit:{d.GetName()}"] = var.GetUnit()
        for attr in var.GetAttributes():
            facts[f"coord_attr:{d.GetName()}:{attr.GetName()}"] = attr.Read()
    return facts


def test_bran_multidimensional_view(fixtures_root, demo_indexes, gdal):
    files = bran_files(fixtures_root)
    index = demo_indexes["bran-demo"]
    src_ds = gdal.OpenEx(str(files[0]), gdal.OF_MULTIDIM_RASTER)  # kept open while its arrays are used
    got_ds = gdal.OpenEx(f'ZARR:"{index}"', gdal.OF_MULTIDIM_RASTER)
    src, got_arr = src_ds.GetRootGroup().OpenMDArray("temp"), got_ds.GetRootGroup().OpenMDArray("temp")
    source = bran_facts(gdal, src)
    got = bran_facts(gdal, got_arr)
    # Time: the index concatenates the months; compare with every file's values in turn.
    source_time = np.concatenate([gdal.OpenEx(str(f), gdal.OF_MULTIDIM_RASTER).GetRootGroup()
                                  .OpenMDArray("Time").ReadAsArray() for f in files])
    np.testing.assert_array_equal(got_arr.GetDimensions()[0].GetIndexingVariable().ReadAsArray(), source_time)
    source.pop("coords:TEMPORAL"), got.pop("coords:TEMPORAL")
    source["block_size"], got["block_size"] = source["block_size"][1:], got["block_size"][1:]
    by_design = {**BY_DESIGN_BRAN, **{k: BY_DESIGN_BRAN["attr:standard_name:coords"]
                                      for k in got if k.startswith("coord_attr:") and k.endswith(":standard_name")},
                 **{k: BY_DESIGN_BRAN["attr:positive"] for k in source if k.endswith(":positive")}}
    extra_index = {k for k in got if k not in source}
    missing_index = {k for k in source if k not in got}
    assert extra_index <= set(by_design), f"the index reports more than the source: {sorted(extra_index - set(by_design))}"
    assert missing_index <= set(by_design), f"the index loses: {sorted(missing_index - set(by_design))}"
    common = set(source) & set(got)
    compare({k: source[k] for k in common}, {k: got[k] for k in common}, by_design, "bran")
    assert got["dim_types"] == ["TEMPORAL", "VERTICAL", "HORIZONTAL_Y", "HORIZONTAL_X"]
    assert got["unit"] == "degrees C"


def test_bran_classic_view(fixtures_root, demo_indexes, gdal):
    """One time step and depth as a classic raster. By design: GDAL's netCDF
    driver flips a south-up grid (latitude increasing) to north-up; the Zarr
    driver presents the array as stored, so the index's view is the source's
    upside down, with the matching geotransform."""
    files = bran_files(fixtures_root)
    index = demo_indexes["bran-demo"]
    source = gdal.Open(f'NETCDF:"{files[0]}":temp')
    view = gdal.Open(f'ZARR:"{index}":/temp:0:0')
    src_band, got_band = source.GetRasterBand(1), view.GetRasterBand(1)
    assert (view.RasterXSize, view.RasterYSize) == (source.RasterXSize, source.RasterYSize)
    assert got_band.GetUnitType() == src_band.GetUnitType() == "degrees C"
    assert got_band.GetNoDataValue() == src_band.GetNoDataValue()
    assert (got_band.GetScale(), got_band.GetOffset()) == (src_band.GetScale(), src_band.GetOffset())
    gt_src, gt_got = source.GetGeoTransform(), view.GetGeoTransform()
    assert gt_got[:3] == pytest.approx(gt_src[:3])
    assert gt_got[5] == pytest.approx(-gt_src[5])
    assert gt_got[3] == pytest.approx(gt_src[3] + gt_src[5] * source.RasterYSize)
    np.testing.assert_array_equal(np.flipud(got_band.ReadAsArray()), src_band.ReadAsArray())


def test_by_design_lists_are_explained():
    for table in (BY_DESIGN_COG, BY_DESIGN_COG_MD, BY_DESIGN_BRAN):
        assert all(len(reason) > 40 for reason in table.values())
    assert EDGE_TIFFS
