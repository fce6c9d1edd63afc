"""The CRI driver's spatial filter (issue 12 §3): a `gdal_translate -projwin`
or a `gdalmdimtranslate -subset` over a region reads exactly the chunks
`chunkindex query --bbox` lists for it, and the BBOX open option restricts
any array (swath and curvilinear ones too, which have no geotransform) to
the chunks whose footprint meets the box, pruning row groups by the `bbox`
statistics and rows by `bbox` then `geometry`.

What the driver read is taken from its debug output, as a user would:
`CPL_DEBUG=CRI_CHUNKS` lists the chunks each read fetched, and every
dataset that read its table prints a `read summary` line (row groups, rows
loaded, chunks fetched/decoded/skipped) when it closes. GDAL's programs run
as subprocesses: no Python on the read path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from client_support import bran_files, cog_files
from conftest import REPO
from test_footprint_query import _assemble

from chunkindex.indexes.flat import write_cri_gpkg, write_cri_parquet

BIN = Path(sys.executable).parent
SWATH_GRANULES = ("MOD021KM.A2024081.0000.nc", "MOD021KM.A2024081.0540.nc", "MOD021KM.A2024081.0820.nc")


# Under AddressSanitizer (tools/test_driver_asan.sh) GDAL's programs run in
# process through their library entry points (see tests/test_cri_driver.py).
IN_PROCESS = bool(os.environ.get("CRI_INPROCESS_TOOLS"))


def _run_in_process(args: tuple[str, ...], debug: str) -> subprocess.CompletedProcess[str]:
    """gdal_translate / gdalmdimtranslate through gdal.Translate /
    gdal.MultiDimTranslate; the debug messages as stderr."""
    from osgeo import gdal

    name, rest = args[0], [a for a in args[1:] if a != "-q"]
    config, open_options = {"CPL_DEBUG": debug}, []
    for flag in ("--config", "-oo"):
        while flag in rest:
            i = rest.index(flag)
            if flag == "--config":
                config[rest[i + 1]] = rest[i + 2]
                del rest[i:i + 3]
            else:
                open_options.append(rest[i + 1])
                del rest[i:i + 2]
    messages: list[str] = []
    gdal.PushErrorHandler(lambda _cls, _no, msg: messages.append(msg))
    try:
        with gdal.config_options(config), gdal.ExceptionMgr(useExceptions=True):
            multidim = name == "gdalmdimtranslate"
            src = gdal.OpenEx(rest[-2], gdal.OF_MULTIDIM_RASTER if multidim else gdal.OF_RASTER,
                              open_options=open_options)
            translate = gdal.MultiDimTranslate if multidim else gdal.Translate
            translate(rest[-1], src, options=rest[:-2]).Close()
            src.Close()  # closing the source prints its read summary
    finally:
        gdal.PopErrorHandler()
    return subprocess.CompletedProcess(args, 0, "", "\n".join(messages))


def run(*args: str, debug: str = "CRI_CHUNKS") -> subprocess.CompletedProcess[str]:
    """A GDAL program with the driver's debug output on (stderr)."""
    if IN_PROCESS:
        return _run_in_process(args, debug)
    exe = BIN / args[0]
    result = subprocess.run([str(exe if exe.exists() else shutil.which(args[0])), "--config", "CPL_DEBUG", debug,
                             *args[1:]], capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result


def chunks_read(stderr: str) -> dict[tuple[str, int], set[tuple[int, ...]]]:
    """(variable, level) -> chunks fetched, from the CRI_CHUNKS debug lines."""
    out: dict[tuple[str, int], set[tuple[int, ...]]] = {}
    for name, level, coords in re.findall(r"CRI_CHUNKS: (\S+) level (\d+):((?: \([\d,]+\))+)", stderr):
        out.setdefault((name, int(level)), set()).update(
            tuple(int(v) for v in c.split(",")) for c in re.findall(r"\(([\d,]+)\)", coords))
    return out


def summary(stderr: str) -> Counter:
    """The `read summary` counters, added over the datasets that read."""
    total: Counter = Counter()
    for line in re.findall(r"CRI: read summary: .*", stderr):
        total.update({k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", line)})
    assert total, f"no read summary in:\n{stderr[-2000:]}"
    return total


def listed(index: Path, bbox, variable: str, crs: str = "EPSG:4326", **fixed: int) -> set[tuple[int, ...]]:
    """Chunks `chunkindex query` lists for `bbox` (level 0), restricted to
    the fixed chunk coordinates (e.g. c0=time step)."""
    out = subprocess.run([str(BIN / "chunkindex"), "query", str(index), "--bbox", ",".join(map(str, bbox)),
                          "--crs", crs, "--variable", variable, "--level", "0", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    rows = json.loads(out) if out.strip() else []
    keys = sorted(k for k in (rows[0] if rows else {}) if re.fullmatch(r"c\d+", k))
    return {tuple(r[k] for k in keys if r[k] is not None) for r in rows
            if all(r[k] == v for k, v in fixed.items())}


def read(path: Path | str) -> np.ndarray:
    from osgeo import gdal

    gdal.UseExceptions()
    return gdal.Open(str(path)).ReadAsArray()


def cri(index: Path, variable: str, t: int) -> str:
    return f'CRI:"{index}":{variable}:{t}'


@pytest.fixture(scope="module")
def indexes(fixtures_root, tmp_path_factory, gdal) -> dict[str, tuple[list, Path]]:
    """CRI indexes with footprints (as the workflow writes them with the
    `footprints` kind): a WGS84 regular grid (GHRSST-like, 512-px chunks), a
    UTM one (one tile of the two-zone set at two dates, 256-px chunks), a
    0..360 4-D grid (BRAN), a curvilinear grid across 180° (ROMS) and three
    swath granules (one across 180°), with a GeoPackage form of the swath."""
    out = tmp_path_factory.mktemp("cri-spatial")
    swath = out / "swath-src"
    swath.mkdir()
    for name in SWATH_GRANULES:
        shutil.copy(fixtures_root / "modis-swath" / name, swath / name)
    utm = out / "utm-src"
    utm.mkdir()
    for tif in sorted((fixtures_root / "utm-two-zones").rglob("T55HFA_*.tif")):
        shutil.copy(tif, utm / tif.name)
    utm_recipe = {"id": "utm-tile", "title": "one UTM tile at two dates", "format": "cog", "source": {"url": str(utm), "pattern": "T55HFA_{time:%Y%m%d}_B04.tif"},
                  "variables": [{"name": "B04"}], "concat": {"dim": "time", "from": "filename"},
                  "output": {"kinds": ["cri-parquet", "footprints"]}, "validation": {"sample_chunks": 5}}
    built = {}
    for kind, recipe in (("regular", "ghrsst-demo-deflate"), ("utm", None), ("bran", "bran-demo"),
                         ("curvilinear", "roms-demo"), ("swath", "modis-demo")):
        doc = utm_recipe if recipe is None else yaml.safe_load((REPO / "recipes" / f"{recipe}.yaml").read_text())
        doc["source"].pop("synthetic", None)
        if kind == "swath":
            doc["source"]["url"] = str(swath)
        arrays = _assemble(doc, REPO)
        built[kind] = (arrays, write_cri_parquet(arrays, out / f"{kind}.cri.parquet", footprints=True))
        if kind == "swath":
            built["swath-gpkg"] = (arrays, write_cri_gpkg(arrays, out / f"{kind}.cri.gpkg", footprints=True))
    return built


def _pixel_chunks(source: Path, box: tuple[float, float, float, float], t: int) -> set[tuple[int, ...]]:
    """Brute force, no footprint: the chunks (t, row chunk, column chunk) of
    the source COG's pixels whose cell meets `box` (minx, miny, maxx, maxy)."""
    from osgeo import gdal

    ds = gdal.Open(str(source))
    x0, dx, _, y0, _, dy = ds.GetGeoTransform()
    bx, by = ds.GetRasterBand(1).GetBlockSize()
    cols = np.arange(ds.RasterXSize)
    rows = np.arange(ds.RasterYSize)
    xs = np.flatnonzero((x0 + (cols + 1) * dx >= box[0]) & (x0 + cols * dx <= box[2]))
    ys = np.flatnonzero((y0 + rows * dy >= box[1]) & (y0 + (rows + 1) * dy <= box[3]))
    return {(t, int(r), int(c)) for r in np.unique(ys // by) for c in np.unique(xs // bx)}


def _source(fixtures_root: Path, kind: str, t: int) -> Path:
    if kind == "regular":
        return cog_files(fixtures_root, "ghrsst-deflate-pred1", "analysed_sst")[t]
    return sorted((fixtures_root / "utm-two-zones").rglob("T55HFA_*.tif"))[t]


# (kind, variable, time step, -projwin ulx uly lrx lry, native CRS): pixel-aligned
# windows whose edges are more than a pixel from any chunk edge.
PROJWINS = [
    ("regular", "analysed_sst", 0, (100.0, -20.0, 150.0, -60.0), "EPSG:4326"),  # 2 of 8 chunks
    ("regular", "analysed_sst", 3, (0.0, 0.0, 60.0, -40.0), "EPSG:4326"),       # 4 of 8
    ("utm", "B04", 1, (729960.0, 6290040.0, 769960.0, 6240040.0), "EPSG:32755"),  # 6 of 25
]


@pytest.mark.parametrize("kind,variable,t,projwin,crs", PROJWINS, ids=[f"{p[0]}-t{p[2]}" for p in PROJWINS])
def test_projwin_reads_the_chunks_the_query_lists(indexes, fixtures_root, tmp_path, kind, variable, t, projwin, crs):
    """On a georeferenced grid the window is the spatial filter: the chunks
    read equal `chunkindex query --bbox <window> --crs <native CRS>` and the
    brute-force pixel test, and the pixels equal GDAL's read of the COG."""
    _, index = indexes[kind]
    ulx, uly, lrx, lry = projwin
    got = run("gdal_translate", "-q", "-projwin", *map(str, projwin), cri(index, variable, t), str(tmp_path / "cri.tif"))
    read_chunks = chunks_read(got.stderr)
    assert set(read_chunks) == {(variable, 0)}, read_chunks.keys()
    box = (ulx, lry, lrx, uly)
    query = listed(index, box, variable, crs, c0=t)
    source = _source(fixtures_root, kind, t)
    assert read_chunks[(variable, 0)] == query == _pixel_chunks(source, box, t)
    stats = summary(got.stderr)
    assert stats["chunks_fetched"] == stats["chunks_decoded"] == len(query)
    assert stats["rows_outside_bbox"] == 0
    run("gdal_translate", "-q", "-projwin", *map(str, projwin), str(source), str(tmp_path / "src.tif"), debug="OFF")
    want = read(tmp_path / "src.tif")
    assert want.size > 0
    np.testing.assert_array_equal(read(tmp_path / "cri.tif"), want)


def test_bbox_option_on_a_regular_grid(indexes, fixtures_root, tmp_path):
    """BBOX without a window: the whole raster, only the chunks the query
    lists read; the others are nodata. Same chunks as the -projwin above."""
    _, index = indexes["regular"]
    box = (100.0, -60.0, 150.0, -20.0)
    full = run("gdal_translate", "-q", cri(index, "analysed_sst", 0), str(tmp_path / "full.tif"))
    filtered = run("gdal_translate", "-q", "-oo", "BBOX=" + ",".join(map(str, box)), cri(index, "analysed_sst", 0),
                   str(tmp_path / "bbox.tif"))
    query = listed(index, box, "analysed_sst", c0=0)
    assert chunks_read(filtered.stderr)[("analysed_sst", 0)] == query == {(0, 1, 2), (0, 1, 3)}
    every, some = summary(full.stderr), summary(filtered.stderr)
    assert every["chunks_fetched"] == 8 and every["rows_outside_bbox"] == 0
    assert some["chunks_fetched"] == 2 and some["rows_outside_bbox"] == 6
    assert some["rows_loaded"] == every["rows_loaded"]  # one row group: a whole day
    got, want = read(tmp_path / "bbox.tif"), read(_source(fixtures_root, "regular", 0))
    inside = np.zeros(got.shape, bool)
    for _, cy, cx in query:
        inside[cy * 512:(cy + 1) * 512, cx * 512:(cx + 1) * 512] = True
    np.testing.assert_array_equal(got[inside], want[inside])
    from osgeo import gdal

    out = gdal.Open(str(tmp_path / "bbox.tif"))
    nodata = out.GetRasterBand(1).GetNoDataValue()
    assert nodata is not None and np.all(got[~inside] == nodata)


def test_multidim_subset_reads_the_chunks_the_query_lists(indexes, fixtures_root, tmp_path):
    """`gdalmdimtranslate -subset` on the 4-D 0..360 grid (BRAN): chunks read
    = the query of the subset's box, and values equal the source file's."""
    arrays, index = indexes["bran"]
    temp = next(a for a in arrays if a.name == "temp")
    lat = next(a for a in arrays if a.name == "yt_ocean")
    subset = ["-subset", "Time(16111,16114)", "-subset", "st_ocean(5,15)",
              "-subset", "yt_ocean(-20,10)", "-subset", "xt_ocean(100,160)"]
    got = run("gdalmdimtranslate", "-array", "temp", *subset, f'CRI:"{index}"', str(tmp_path / "cri.nc"))
    read_chunks = chunks_read(got.stderr)[("temp", 0)]
    # The selected pixels' cells: centres in the ranges, a half pixel each side.
    half = float(np.diff(np.frombuffer(lat.inline, dtype=lat.dtype)[:2])[0]) / 2
    box = (100 - half, -20 - half, 160 + half, 10 + half)
    times, depths = {c[0] for c in read_chunks}, {c[1] for c in read_chunks}
    query = {c for c in listed(index, box, "temp") if c[0] in times and c[1] in depths}
    assert read_chunks == query
    assert temp.chunks[-2:] != temp.shape[-2:] and len(read_chunks) < np.prod(temp.chunk_grid) / 4
    from osgeo import gdal

    run("gdalmdimtranslate", "-array", "temp", *subset, str(bran_files(fixtures_root)[1]), str(tmp_path / "src.nc"),
        debug="OFF")
    gdal.UseExceptions()
    a = gdal.OpenEx(str(tmp_path / "cri.nc"), gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("temp")
    b = gdal.OpenEx(str(tmp_path / "src.nc"), gdal.OF_MULTIDIM_RASTER).GetRootGroup().OpenMDArray("temp")
    np.testing.assert_array_equal(a.ReadAsArray(), b.ReadAsArray())


def _swath_brute_force(arrays, variable: str, granule: int, box) -> set[tuple[int, int, int]]:
    """Brute force, no footprint: the chunks (granule, row chunk, column
    chunk) of `variable` with a pixel whose quadrilateral (corners from the
    tie-point geolocation) meets the lon/lat `box` (minx > maxx: across 180°).
    Quads whose envelope lies inside a box part hit, those whose envelope
    misses every part do not, and shapely decides the rest."""
    import shapely

    from chunkindex.geo.checks import chunk_of_pixels, pixel_points
    from chunkindex.geo.grids import TiePointGrid
    from chunkindex.indexes.footprints import array_grid

    by_name = {a.name: a for a in arrays}
    array = by_name[variable]
    g = array_grid(array, by_name).grid
    grid = TiePointGrid(g.lon[granule], g.lat[granule], g.tie_rows, g.tie_cols, g.shape, g.scan_lines)
    lon, lat = pixel_points(grid)
    centre = lon[..., 4:5]
    lon = (centre + (lon[..., :4] - centre + 180.0) % 360.0 - 180.0).reshape(-1, 4)  # each quad continuous
    lat = lat[..., :4].reshape(-1, 4)
    parts = [(box[0], box[1], 180.0, box[3]), (-180.0, box[1], box[2], box[3])] if box[0] > box[2] else [box]
    hit = np.zeros(len(lon), bool)
    for x0, y0, x1, y1 in parts:
        for shift in (-360.0, 0.0, 360.0):
            qx0, qx1 = lon.min(axis=1) + shift, lon.max(axis=1) + shift
            qy0, qy1 = lat.min(axis=1), lat.max(axis=1)
            meets = (qx1 >= x0) & (qx0 <= x1) & (qy1 >= y0) & (qy0 <= y1)
            inside = (qx0 >= x0) & (qx1 <= x1) & (qy0 >= y0) & (qy1 <= y1)
            edge = np.flatnonzero(meets & ~inside & ~hit)
            quads = shapely.polygons(np.stack([lon[edge] + shift, lat[edge]], axis=-1))
            hit[edge] = shapely.intersects(quads, shapely.box(x0, y0, x1, y1))
            hit |= inside
    cy, cx = array.chunks[-2:]
    nx = -(-array.shape[-1] // cx)
    return {(granule, int(n // nx), int(n % nx)) for n in np.unique(chunk_of_pixels(grid, (cy, cx)).ravel()[hit])}


# Granule 0 crosses the antimeridian near 65 S; granule 2 (08:20) is over the
# southern Indian Ocean.
SWATH_BOXES = [(0, (175.0, -70.0, -175.0, -60.0)), (2, (70.0, -48.0, 76.0, -44.0))]


@pytest.mark.parametrize("granule,box", SWATH_BOXES, ids=["antimeridian", "indian-ocean"])
def test_bbox_option_on_swath_granules(indexes, tmp_path, granule, box):
    """A swath has no geotransform: BBOX is its spatial filter. The scans
    read are those `chunkindex query` lists (a superset of brute force by
    the footprint margins only), their pixels equal the granule's, the rest
    is nodata; the GeoPackage form and the OGR row reader read the same."""
    arrays, index = indexes["swath"]
    option = "BBOX=" + ",".join(map(str, box))
    got = run("gdal_translate", "-q", "-oo", option, cri(index, "radiance", granule), str(tmp_path / "cri.tif"))
    read_chunks = chunks_read(got.stderr)[("radiance", 0)]
    query = listed(index, box, "radiance", c0=granule)
    assert read_chunks == query and query
    brute = _swath_brute_force(arrays, "radiance", granule, box)
    assert brute <= read_chunks and len(read_chunks - brute) <= max(2, len(brute) // 5)
    stats = summary(got.stderr)
    total = int(np.prod(next(a for a in arrays if a.name == "radiance").chunk_grid[1:]))
    assert stats["chunks_fetched"] == len(query)
    assert stats["rows_outside_bbox"] >= total - len(query)
    print(f"swath granule {granule}: {len(query)} of {total} scans read, {stats['rows_loaded']} rows loaded")

    values = read(tmp_path / "cri.tif")
    source = read(f'HDF5:"{Path(index).parent / "swath-src" / SWATH_GRANULES[granule]}"://radiance')
    inside = np.zeros(values.shape, bool)
    for _, cy, _ in read_chunks:  # one-scan chunks: 10 lines x the whole width
        inside[cy * 10:(cy + 1) * 10] = True
    np.testing.assert_array_equal(values[inside], source[inside])
    assert np.all(values[~inside] == -1)  # the array's _FillValue, the band's nodata

    for other, config in ((indexes["swath-gpkg"][1], []), (index, ["--config", "CRI_USE_OGR", "YES"])):
        again = run("gdal_translate", "-q", *config, "-oo", option, cri(other, "radiance", granule),
                    str(tmp_path / "again.tif"))
        assert chunks_read(again.stderr)[("radiance", 0)] == read_chunks, other
        np.testing.assert_array_equal(read(tmp_path / "again.tif"), values)


def test_bbox_in_a_projected_crs_on_a_curvilinear_grid(indexes, tmp_path):
    """BBOX_CRS: a UTM box over the ROMS grid (which crosses 180°) reads the
    chunks `chunkindex query --crs` lists, at both depths (bands)."""
    _, index = indexes["curvilinear"]
    box, crs = (700000, 5500000, 760000, 5560000), "EPSG:32760"
    got = run("gdal_translate", "-q", "-oo", "BBOX=" + ",".join(map(str, box)), "-oo", f"BBOX_CRS={crs}",
              cri(index, "temp", 0), str(tmp_path / "cri.tif"))
    read_chunks = chunks_read(got.stderr)[("temp", 0)]
    query = listed(index, box, "temp", crs, c0=0)
    assert read_chunks == query and {c[1] for c in query} == {0, 1}
    whole = run("gdal_translate", "-q", cri(index, "temp", 0), str(tmp_path / "all.tif"))
    values, every = read(tmp_path / "cri.tif"), read(tmp_path / "all.tif")
    for _, depth, cy, cx in query:  # chunks of 50 x 60
        window = (depth, slice(cy * 50, (cy + 1) * 50), slice(cx * 60, (cx + 1) * 60))
        np.testing.assert_array_equal(values[window], every[window])
    assert summary(got.stderr)["chunks_fetched"] == len(query) < summary(whole.stderr)["chunks_fetched"]
    # gdalmdimtranslate reopens its source by name through a VRT, without the
    # open options: the CRI_BBOX / CRI_BBOX_CRS configuration options reach it.
    mdim = run("gdalmdimtranslate", "--config", "CRI_BBOX", ",".join(map(str, box)), "--config", "CRI_BBOX_CRS", crs,
               "-array", "temp", f'CRI:"{index}"', str(tmp_path / "cri.nc"))
    every_step = listed(index, box, "temp", crs)
    assert chunks_read(mdim.stderr)[("temp", 0)] == every_step and len({c[0] for c in every_step}) > 1


def test_row_groups_pruned_by_bbox_statistics(indexes, tmp_path):
    """Row groups whose `bbox` statistics miss the box are not read: on an
    index cut into row groups of 20 rows (a few scans each), a box over
    part of one granule reads fewer groups and rows than the same read
    without BBOX, and the same chunks as the OGR row reader (no pruning)."""
    _, index = indexes["swath"]
    small = tmp_path / "small.cri.parquet"
    pq.write_table(pq.read_table(index), small, row_group_size=20)
    assert pq.ParquetFile(small).metadata.num_row_groups > 30
    option = "BBOX=" + ",".join(map(str, SWATH_BOXES[1][1]))
    pruned = run("gdal_translate", "-q", "-oo", option, cri(small, "radiance", 2), str(tmp_path / "a.tif"))
    through_ogr = run("gdal_translate", "-q", "-oo", option, "--config", "CRI_USE_OGR", "YES",
                      cri(small, "radiance", 2), str(tmp_path / "b.tif"))
    unfiltered = run("gdal_translate", "-q", cri(small, "radiance", 2), str(tmp_path / "c.tif"))
    stats, every = summary(pruned.stderr), summary(unfiltered.stderr)
    assert stats["row_groups_pruned_bbox"] > 0
    assert stats["row_groups_read"] + stats["row_groups_pruned_bbox"] == every["row_groups_read"]
    assert stats["rows_loaded"] < every["rows_loaded"]
    assert chunks_read(pruned.stderr) == chunks_read(through_ogr.stderr)
    np.testing.assert_array_equal(read(tmp_path / "a.tif"), read(tmp_path / "b.tif"))
    print(f"row groups read {stats['row_groups_read']} of {every['row_groups_read']}, rows loaded "
          f"{stats['rows_loaded']} of {every['rows_loaded']}, chunks fetched {stats['chunks_fetched']} of "
          f"{every['chunks_fetched']}")


def test_raw_block_info_of_a_chunk_outside_the_bbox(indexes, fixtures_root, gdal):
    """A chunk left out by BBOX keeps its reference (GetRawBlockInfo) and
    says so, and reads as nodata; without BBOX nothing is marked."""
    _, index = indexes["regular"]
    source = read(_source(fixtures_root, "regular", 0))[:64, :64]
    for options, marked in ((["BBOX=100,-60,150,-20"], True), ([], False)):
        arr = gdal.OpenEx(f'CRI:"{index}"', gdal.OF_MULTIDIM_RASTER, open_options=options) \
            .GetRootGroup().OpenMDArray("analysed_sst")
        outside, inside = arr.GetRawBlockInfo([0, 0, 0]), arr.GetRawBlockInfo([0, 1, 2])
        assert outside.GetSize() > 0 and outside.GetFilename()
        assert ("SPATIAL_FILTER=OUTSIDE" in (outside.GetInfo() or [])) == marked
        assert "SPATIAL_FILTER=OUTSIDE" not in (inside.GetInfo() or [])
        values = arr.ReadAsArray(array_start_idx=[0, 0, 0], count=[1, 64, 64])[0]
        if marked:
            assert np.all(values == arr.GetNoDataValueAsDouble())
        else:
            np.testing.assert_array_equal(values, source)


def test_bbox_errors_name_the_problem(indexes, tmp_path, gdal):
    _, index = indexes["regular"]
    plain = tmp_path / "plain.cri.parquet"
    table = pq.read_table(index)
    meta = pq.read_schema(index).metadata
    pq.write_table(table.drop_columns(["geometry", "bbox"]).replace_schema_metadata({b"cri": meta[b"cri"]}), plain)
    cases = [
        (plain, ["BBOX=0,0,1,1"], "no chunk footprints"),
        (index, ["BBOX=0,0,1"], "expected minx,miny,maxx,maxy"),
        (index, ["BBOX=0,5,1,1"], "miny > maxy"),
        (index, ["BBOX_CRS=EPSG:4326"], "BBOX_CRS=EPSG:4326 needs a BBOX"),
        (index, ["BBOX=0,0,1,1", "BBOX_CRS=EPSG:999999"], "BBOX_CRS=EPSG:999999"),
    ]
    for path, options, message in cases:
        with pytest.raises(RuntimeError, match=re.escape(message)):
            gdal.OpenEx(cri(path, "analysed_sst", 0), gdal.OF_RASTER, open_options=options)
    # An index without footprints still opens and reads without BBOX.
    assert gdal.OpenEx(cri(plain, "analysed_sst", 0), gdal.OF_RASTER).RasterXSize == 1800
