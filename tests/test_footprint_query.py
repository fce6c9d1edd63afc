"""`chunkindex query` against brute force on every fixture kind, and the same
query from GDAL (`ogr2ogr -spat -where` on the GeoParquet, GeoPackage and
FlatGeobuf) and DuckDB (bbox columns)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
import yaml
from conftest import REPO

from chunkindex.geo.checks import chunk_of_pixels, pixel_points
from chunkindex.geo.query import Query, query_index
from chunkindex.indexes.flat import write_cri_gpkg, write_cri_parquet
from chunkindex.indexes.footprints import array_grid, write_footprints

BIN = Path(sys.executable).parent
KEY = ("variable", "level", "c0", "c1", "c2", "c3")


def _assemble(recipe_doc: dict, base: Path):
    from chunkindex.pipeline import extractor_for, store_spec
    from chunkindex.recipe import recipe_from_dict
    from chunkindex.sources.listing import list_sources

    recipe = recipe_from_dict(recipe_doc)
    spec = store_spec(recipe, base)
    manifest = list_sources(recipe, spec)
    headers = extractor_for(recipe.format).read_batch(recipe, spec, manifest)
    return extractor_for(recipe.format).assemble(recipe, manifest, headers).arrays


@pytest.fixture(scope="module")
def indexes(fixtures_root, tmp_path_factory):
    """Footprint indexes of a regular (0..360), a regular global, a
    curvilinear and a swath fixture (three granules: across the antimeridian,
    over the north pole, ordinary)."""
    out = tmp_path_factory.mktemp("footprints")
    swath_dir = out / "swath-src"
    swath_dir.mkdir()
    for name in ("MOD021KM.A2024081.0000.nc", "MOD021KM.A2024081.0540.nc", "MOD021KM.A2024081.0820.nc"):
        shutil.copy(fixtures_root / "modis-swath" / name, swath_dir / name)
    built = {}
    for kind, recipe, url in (("regular-0-360", "bran-demo", None), ("regular", "ghrsst-demo-deflate", None),
                              ("curvilinear", "roms-demo", None), ("swath", "modis-demo", str(swath_dir))):
        doc = yaml.safe_load((REPO / "recipes" / f"{recipe}.yaml").read_text())
        doc["source"].pop("synthetic", None)
        if url:
            doc["source"]["url"] = url
        arrays = _assemble(doc, REPO)
        paths = {ext: out / f"{kind}.footprints.{ext}" for ext in ("parquet", "gpkg", "fgb")}
        write_footprints(arrays, paths["parquet"], paths["gpkg"], paths["fgb"])
        paths["cri"] = write_cri_parquet(arrays, out / f"{kind}.cri.parquet", footprints=True)
        paths["cri_gpkg"] = write_cri_gpkg(arrays, out / f"{kind}.cri.gpkg", footprints=True)
        built[kind] = (arrays, paths)
    return built


_QUADS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _pixel_quads(grid) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel's quadrilateral (n, 4, 2), each continuous in longitude,
    and its bounds (n, 4); kept per grid (the variables of a granule share
    one, and every box of a test reuses it)."""
    import hashlib

    digest = hashlib.sha1()
    for field in ("lon", "lat", "tie_rows", "tie_cols", "gcps"):
        if getattr(grid, field, None) is not None:
            digest.update(np.ascontiguousarray(getattr(grid, field)).tobytes())
    key = (type(grid).__name__, digest.hexdigest(), repr(getattr(grid, "geotransform", None)),
           getattr(grid, "order", None), getattr(grid, "width", None), getattr(grid, "height", None),
           getattr(grid, "shape", None), getattr(grid, "scan_lines", None), str(getattr(grid, "crs", "")))
    if key not in _QUADS:
        lon, lat = pixel_points(grid)
        centre = lon[..., 4:5]
        lon = centre + (lon[..., :4] - centre + 180.0) % 360.0 - 180.0  # each quad continuous
        corners = np.stack([lon, lat[..., :4]], axis=-1).reshape(-1, 4, 2)
        bounds = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
        _QUADS[key] = (corners, bounds)
    return _QUADS[key]


def _brute_force(arrays, box) -> set[tuple]:
    """Chunks (KEY) with a pixel whose quadrilateral intersects `box`, from
    the pixel corners of each array's grid: no footprint involved."""
    from chunkindex.geo.grids import GeolocatedGrid, TiePointGrid

    by_name = {a.name: a for a in arrays}
    found: set[tuple] = set()
    shifted = [shapely.transform(box, lambda c, s=s: c + np.array([s, 0.0])) for s in (-360.0, 0.0, 360.0)]
    for array in arrays:
        if array.inline is not None or "variant_of" in array.attrs.get("chunkindex", {}):
            continue
        located = array_grid(array, by_name)
        if located is None or array.name in ("latitude", "longitude", "lon_rho", "lat_rho"):
            continue
        cy, cx = array.chunks[-2:]
        grids = [located.grid]
        if located.stacked:
            g = located.grid
            if isinstance(g, TiePointGrid):
                grids = [TiePointGrid(g.lon[i], g.lat[i], g.tie_rows, g.tie_cols, g.shape, g.scan_lines)
                         for i in range(g.granules)]
            else:
                grids = [GeolocatedGrid(g.lon[i], g.lat[i], g.scan_lines) for i in range(g.granules)]
        hit_spatial = []
        for grid in grids:
            corners, bounds = _pixel_quads(grid)
            hit = np.zeros(len(corners), bool)
            for part in (p for b in shifted for p in shapely.get_parts(b)):
                # Only quads whose bounds meet the box can intersect it: test those exactly.
                xmin, ymin, xmax, ymax = part.bounds
                near = np.flatnonzero((bounds[:, 0] <= xmax) & (bounds[:, 2] >= xmin)
                                      & (bounds[:, 1] <= ymax) & (bounds[:, 3] >= ymin) & ~hit)
                hit[near] = shapely.intersects(shapely.polygons(corners[near]), part)
            hit_spatial.append(set(np.unique(chunk_of_pixels(grid, (cy, cx)).ravel()[hit]).tolist()))
        grid_shape = array.chunk_grid
        nx = grid_shape[-1]
        base = array.name.split("_ovr")[0]
        numbers = np.flatnonzero(array.url_index >= 0)
        index = np.unravel_index(numbers, grid_shape)
        spatial = index[-2] * nx + index[-1]
        granule = index[0] if located.stacked else np.zeros(numbers.size, int)
        for n, s, g in zip(range(numbers.size), spatial, granule):
            if s in hit_spatial[g]:
                coords = tuple(int(index[j][n]) for j in range(len(index)))
                found.add((base, 0, *coords, *([None] * (4 - len(coords)))))
    return found


def _rows(table: pa.Table) -> set[tuple]:
    cols = [table[c].to_pylist() if c in table.column_names else [None] * table.num_rows for c in KEY]
    return set(zip(*cols))


BOXES = {
    "regular-0-360": [(100.0, -40.0, 200.0, 10.0), (170.0, -80.0, -170.0, 80.0), (-20.0, 0.0, 5.0, 3.0)],
    "regular": [(140.0, -45.0, 155.0, -30.0), (-180.0, 80.0, -170.0, 90.0), (179.0, -10.0, -179.0, 10.0)],
    "curvilinear": [(178.0, -45.0, -178.0, -40.0), (170.0, -38.0, 172.0, -36.0), (165.0, -43.0, 167.0, -40.0)],
    # Granule 0 crosses the antimeridian near 65 S, granule 68 passes over the
    # north pole, granule 100 is over the southern Indian Ocean.
    "swath": [(175.0, -70.0, -175.0, -60.0), (-180.0, 87.0, 180.0, 90.0), (70.0, -48.0, 76.0, -44.0),
              (-160.0, -66.0, -150.0, -60.0)],
}


@pytest.mark.parametrize("kind", sorted(BOXES))
def test_query_equals_brute_force(indexes, kind):
    arrays, paths = indexes[kind]
    extra_total = 0
    for bbox in BOXES[kind]:
        result = query_index(paths["parquet"], Query(bbox))
        if kind == "regular":  # level 0 only: brute force is at full resolution
            result = result.filter(pa.compute.equal(result["level"], 0))
        got = _rows(result)
        box = shapely.MultiPolygon([shapely.box(bbox[0], bbox[1], 180, bbox[3]), shapely.box(-180, bbox[1], bbox[2], bbox[3])]) \
            if bbox[0] > bbox[2] else shapely.box(*bbox)
        full = [a for a in arrays if "_ovr" not in a.name]
        expected = _brute_force(full, box)
        missing = expected - got
        assert not missing, f"{kind} {bbox}: {len(missing)} chunks with pixels in the box not returned"
        extra = got - expected
        extra_total += len(extra)
        if kind.startswith("regular"):
            assert not extra, f"{kind} {bbox}: {len(extra)} chunks returned without a pixel in the box"
        assert got, f"{kind} {bbox}: the test box should meet some chunk"
    print(f"{kind}: {extra_total} chunks returned beyond brute force (footprint margins)")


@pytest.mark.parametrize("kind", ["regular", "swath"])
def test_queries_prune_row_groups_exactly(indexes, kind, tmp_path):
    """The index rewritten in 40 row groups or more: its
    footer ranges equal the Parquet statistics, and every query (boxes,
    level, variable, time) returns what the one-row-group index returns,
    through the ranges and, with them removed, through the statistics."""
    from chunkindex.geo import query as q
    from chunkindex.indexes.footprints import write_geoparquet

    _, paths = indexes[kind]
    table = pq.read_table(paths["parquet"])
    small = tmp_path / "small.parquet"
    write_geoparquet(table, small, row_group_rows=max(1, table.num_rows // 40))
    pf = pq.ParquetFile(small)
    assert pf.num_row_groups >= 40 and q.RANGES_KEY in pf.metadata.metadata
    bare = tmp_path / "no-ranges.parquet"
    meta = {k: v for k, v in pf.schema_arrow.metadata.items() if k != q.RANGES_KEY}
    with pq.ParquetWriter(bare, pf.schema_arrow.with_metadata(meta), write_statistics=True) as writer:
        for rg in range(pf.num_row_groups):
            writer.write_table(pf.read_row_group(rg).replace_schema_metadata(meta))
    ranges, times = q._ranges(pf)
    from_stats, times_from_stats = q._ranges(pq.ParquetFile(bare))
    np.testing.assert_array_equal(ranges, from_stats)
    np.testing.assert_array_equal(times, times_from_stats)
    unit = pf.schema_arrow.field("time").type.unit
    # The latest time of a row group holding several: only its last rows match from there on.
    mixed = np.flatnonzero(times[:, 0] < times[:, 1])
    cut = times[mixed[0], 1] if mixed.size else int(np.median(times))
    cut = np.datetime64(int(cut), unit).astype(dt.datetime)
    variable = table["variable"][0].as_py()
    world = (-180.0, -90.0, 180.0, 90.0)
    queries = [Query(box) for box in BOXES[kind]] + [
        Query(BOXES[kind][0], level=0, variable=variable.rsplit("/", 1)[-1]),
        Query(world, start=cut), Query(world, end=cut), Query(BOXES[kind][-1], start=cut, end=cut),
        Query(BOXES[kind][-1], level=1), Query(BOXES[kind][0], variable="no-such-variable")]
    live = 0
    for query in queries:
        expected = _rows(query_index(paths["parquet"], query))
        assert _rows(query_index(small, query)) == expected, query
        assert _rows(query_index(bare, query)) == expected, query
        if query.bbox == world:
            continue
        for envelope in (tuple(shapely.bounds(p)) for p in shapely.get_parts(q.query_geometry(query.bbox))):
            live += int(q._live_groups(ranges, times, query, unit, envelope).sum())
    assert live < (len(queries) - 2) * pf.num_row_groups / 2, "the ranges should prune most row groups"


def test_spatial_order_keeps_row_groups_small():
    """GHRSST's six levels of 512 x 512 tiles in row groups of 64 tiles:
    every row group of fine tiles spans a small region (size classes keep
    the 160-degree tiles of level 5 out; Hilbert, not Morton: no jumps), and
    the tiles split at the antimeridian go by latitude."""
    from chunkindex.geo import AffineGrid, grid_footprints
    from chunkindex.indexes.footprints import spatial_order

    bounds = np.concatenate([grid_footprints(AffineGrid((-179.995, 0.01 * f, 0.0, 89.995, 0.0, -0.01 * f),
                                                        -(-36000 // f), -(-17999 // f)), (512, 512)).bounds
                             for f in (1, 2, 4, 8, 16, 32)])
    ordered = bounds[spatial_order(bounds)]
    groups = ordered[: len(ordered) // 64 * 64].reshape(-1, 64, 4)
    area = ((groups[:, :, 2].max(axis=1) - groups[:, :, 0].min(axis=1))
            * (groups[:, :, 3].max(axis=1) - groups[:, :, 1].min(axis=1)))
    # Morton order over all levels gave 0 groups of level 0 tiles alone and a median of 4,194 square degrees.
    level0 = (groups[:, :, 2] - groups[:, :, 0]).max(axis=1) < 6  # 5.12 degrees
    assert level0.sum() >= 2556 // 64 - 1, "level 0 tiles fill row groups of their own"
    assert np.median(area) < 3000, "row groups span small regions"
    wide = ordered[(ordered[:, 2] - ordered[:, 0]) > 180]
    assert len(wide) and (ordered[-len(wide):] == wide).all(), "tiles split at 180 go last"
    assert (np.diff(wide[:, 1] + wide[:, 3]) >= 0).all(), "tiles split at 180 go by latitude"


def _ogr_rows(path: Path, bbox, where: str, fields_from: Path | None = None) -> set[tuple]:
    """The chunks `ogr2ogr -spat ... -where ...` selects (GeoJSON on stdout: this GDAL has no CSV driver)."""
    import json

    fields = [k for k in KEY if k in pq.read_schema(fields_from or path.with_suffix(".parquet")).names]
    out = subprocess.run([str(BIN / "ogr2ogr"), "-f", "GeoJSON", "/vsistdout/", str(path), "-spat", *map(str, bbox),
                          "-where", where, "-select", ",".join(fields)], capture_output=True, text=True, check=True)
    return {tuple(f["properties"].get(k) for k in KEY) for f in json.loads(out.stdout)["features"]}


@pytest.mark.parametrize("kind", ["regular-0-360", "curvilinear", "swath"])
def test_gdal_spatial_filter_returns_the_same_chunks(indexes, kind):
    _, paths = indexes[kind]
    bbox = BOXES[kind][-1]
    variable = {"regular-0-360": "temp", "curvilinear": "temp", "swath": "cloud_mask"}[kind]
    ours = _rows(query_index(paths["parquet"], Query(bbox, variable=variable)))
    assert ours
    for ext in ("parquet", "gpkg", "fgb"):
        theirs = _ogr_rows(paths[ext], bbox, f"variable = '{variable}'")
        assert theirs == ours, f"{kind} {ext}: GDAL returns {len(theirs)} chunks, chunkindex {len(ours)}"


def test_duckdb_bbox_columns_return_a_superset_equal_on_regular_grids(indexes):
    """Without DuckDB's spatial extension (not installable offline here) the
    bbox covering columns answer: exactly on a regular grid whose chunks do
    not cross the antimeridian, a superset elsewhere (a split footprint's
    bbox spans -180..180)."""
    import duckdb

    for kind in ("regular", "regular-0-360", "swath"):
        _, paths = indexes[kind]
        bbox = next(b for b in BOXES[kind] if b[0] <= b[2])  # SQL below does not wrap the antimeridian
        names = pq.read_schema(paths["parquet"]).names
        select = ", ".join(k if k in names else f"NULL AS {k}" for k in KEY)
        sql = (f"SELECT {select} FROM read_parquet('{paths['parquet']}') "
               f"WHERE bbox.xmin <= {bbox[2]} AND bbox.xmax >= {bbox[0]} "
               f"AND bbox.ymin <= {bbox[3]} AND bbox.ymax >= {bbox[1]}")
        rows = set(duckdb.sql(sql).fetchall())
        ours = _rows(query_index(paths["parquet"], Query(bbox)))
        assert ours <= rows
        if kind == "regular":
            assert rows == ours


def test_gpkg_has_an_rtree_and_parquet_geo_metadata(indexes):
    import json
    import sqlite3

    _, paths = indexes["swath"]
    with sqlite3.connect(paths["gpkg"]) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "rtree_chunk_footprints_geom" in tables
    geo = json.loads(pq.read_schema(paths["parquet"]).metadata[b"geo"])
    column = geo["columns"]["geometry"]
    assert geo["version"] == "1.1.0" and column["encoding"] == "WKB"
    assert column["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]


def test_geoparquet_written_row_group_by_row_group_equals_one_whole_table_write(indexes, tmp_path):
    """The writer takes and decodes one row group at a time (bounded memory):
    the file is byte-identical to writing the whole sorted table at once."""
    import json

    from chunkindex.geo.query import row_group_ranges
    from chunkindex.indexes.footprints import (
        geo_metadata,
        index_footprints,
        parquet_options,
        spatial_order,
        write_geoparquet,
    )

    arrays, _ = indexes["regular"]
    table = index_footprints(arrays)
    bbox = table["bbox"].combine_chunks()
    order = spatial_order(np.stack([bbox.field(c).to_numpy() for c in ("xmin", "ymin", "xmax", "ymax")], axis=1))
    sorted_table = table.take(pa.array(order))
    plain = pa.table({n: c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c
                      for n, c in zip(sorted_table.column_names, sorted_table.columns)})
    for rows in (7, table.num_rows + 1):  # across row groups, and one row group
        meta = {**(sorted_table.schema.metadata or {}), b"geo": json.dumps(geo_metadata(sorted_table)).encode(),
                **row_group_ranges(sorted_table, rows)}
        whole = plain.replace_schema_metadata(meta)
        pq.write_table(whole, tmp_path / "whole.parquet", row_group_size=rows, **parquet_options(whole.schema))
        write_geoparquet(table, tmp_path / "streamed.parquet", row_group_rows=rows)
        assert pq.ParquetFile(tmp_path / "streamed.parquet").num_row_groups == -(-table.num_rows // rows)
        assert (tmp_path / "streamed.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()


@pytest.mark.parametrize("kind", sorted(BOXES))
def test_cri_parquet_with_footprints_answers_as_the_footprint_index(indexes, kind):
    """The flat CRI index written with footprints: `geometry` + `bbox` columns
    with row-group statistics and GeoParquet `geo` metadata; `chunkindex
    query` on it returns the chunks it returns on the footprint GeoParquet,
    and so does GDAL's spatial filter on it."""
    import json

    _, paths = indexes[kind]
    cri = paths["cri"]
    pf = pq.ParquetFile(cri)
    assert pf.schema_arrow.field("geometry").type == pa.binary()
    assert [f.name for f in pf.schema_arrow.field("bbox").type] == ["xmin", "ymin", "xmax", "ymax"]
    geo = json.loads(pf.metadata.metadata[b"geo"])
    assert geo["columns"]["geometry"]["covering"]["bbox"]["ymax"] == ["bbox", "ymax"]
    assert b"cri" in pf.metadata.metadata  # still a CRI index
    leaf = {pf.metadata.schema.column(i).path: i for i in range(pf.metadata.num_columns)}
    stats = [pf.metadata.row_group(g).column(leaf["bbox.xmin"]).statistics for g in range(pf.num_row_groups)]
    assert any(st is not None and st.has_min_max for st in stats)  # (coordinate rows: null geometry)
    key = [k for k in KEY if k in pf.schema_arrow.names]

    def keys(table: pa.Table) -> set[tuple]:
        return set(zip(*[pa.compute.cast(table[k], pa.string()).to_pylist() if k == "variable"
                         else table[k].to_pylist() for k in key]))

    for bbox in BOXES[kind]:
        ours = keys(query_index(cri, Query(bbox)))
        assert ours == keys(query_index(paths["parquet"], Query(bbox))), f"{kind} {bbox}"
        assert ours
    bbox = next(b for b in BOXES[kind] if b[0] <= b[2])  # -spat does not wrap the antimeridian
    via_gdal = _ogr_rows(cri, bbox, "level = 0")
    expected = {(*r, *([None] * (len(KEY) - len(key)))) for r in keys(query_index(cri, Query(bbox, level=0)))}
    assert via_gdal == expected, f"{kind}: GDAL returns {len(via_gdal)} chunks of the CRI, chunkindex {len(expected)}"
    # The GeoPackage form: the same rows, the footprint as its geometry (R-tree).
    via_gpkg = _ogr_rows(paths["cri_gpkg"], bbox, "level = 0", fields_from=cri)
    assert via_gpkg == expected, f"{kind}: GDAL returns {len(via_gpkg)} chunks of the CRI GeoPackage"
    with sqlite3.connect(paths["cri_gpkg"]) as db:
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'rtree_chunks_geometry'").fetchone()[0]
    with pytest.raises(ValueError, match="no 'time' column"):
        query_index(cri, Query(bbox, start=dt.datetime(2022, 1, 1)))


def test_query_cli_formats_and_errors(indexes, tmp_path):
    _, paths = indexes["curvilinear"]
    cli = str(BIN / "chunkindex")
    args = [cli, "query", str(paths["parquet"]), "--bbox", "178,-45,-178,-40", "--time", "2022-01-01/2022-01-31"]
    text = subprocess.run([*args, "--format", "csv"], capture_output=True, text=True, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and all(r["time"].startswith("2022-01") for r in rows)
    json_out = subprocess.run([*args, "--format", "json"], capture_output=True, text=True, check=True).stdout
    assert json_out.startswith("[{")
    out = tmp_path / "q.parquet"
    subprocess.run([*args, "--format", "parquet", "--output", str(out)], check=True, capture_output=True)
    assert pq.read_table(out).num_rows == len(rows)
    utm = subprocess.run([cli, "query", str(paths["parquet"]), "--bbox", "700000,5500000,760000,5560000",
                          "--crs", "EPSG:32760"], capture_output=True, text=True, check=False)
    assert utm.returncode == 0
    bad = subprocess.run([cli, "query", str(paths["parquet"]), "--bbox", "1,2,3"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "MINX,MINY,MAXX,MAXY" in bad.stderr
    not_fp = subprocess.run([cli, "query", str(REPO / "tests/data/index-digests.json"), "--bbox", "0,0,1,1"],
                            capture_output=True, text=True, check=False)
    assert not_fp.returncode != 0


def test_coverage_gti_mosaics_a_time_step_of_two_utm_zones(fixtures_root, tmp_path, gdal):
    import datetime as dt

    from chunkindex.indexes.coverage import write_gti

    files = sorted((fixtures_root / "utm-two-zones").rglob("*.tif"))
    times = [dt.datetime.strptime(f.name.split("_")[1], "%Y%m%d") for f in files]
    target = tmp_path / "utm.gti.gpkg"
    assert write_gti([str(f) for f in files], times, target) == 2
    latest = gdal.Open(str(target))  # stock GDAL, GTI driver: the latest step
    assert latest.GetDriver().ShortName == "GTI"
    assert latest.GetSpatialRef().GetAuthorityCode(None) == "4326"
    mosaic = latest.GetRasterBand(1).ReadAsArray(buf_xsize=300, buf_ysize=120)
    assert (mosaic > 0).mean() > 0.9  # both zones' tiles, warped, cover the mosaic
    first = gdal.OpenEx(str(target), open_options=["LAYER=t_20240105"])
    lon_min, lon_max = first.GetGeoTransform()[0], first.GetGeoTransform()[0] + first.RasterXSize * first.GetGeoTransform()[1]
    assert lon_min < 150 < lon_max  # spans the zone 55 / 56 boundary
    vector = gdal.OpenEx(str(target), gdal.OF_VECTOR)
    assert {vector.GetLayer(i).GetName() for i in range(vector.GetLayerCount())} == {"t_20240105", "t_20240115"}
    assert vector.GetLayer(0).GetFeatureCount() == 4


@pytest.mark.parametrize("fixture_set", ["utm-two-zones", "ghrsst-deflate-pred1"])
def test_coverage_grids_from_the_headers_equal_gdals(fixtures_root, tmp_path, gdal, fixture_set):
    """The write step places GTI tiles from the header rows already read,
    not by opening every file again; the footprints equal GDAL's."""
    from shapely import wkt

    from chunkindex.formats.tiff.headers import read_batch
    from chunkindex.indexes.coverage import _gdal_grid, header_grids, write_gti
    from chunkindex.pipeline import quick_recipe, store_spec
    from chunkindex.sources.listing import list_sources

    recipe = quick_recipe("cov", str(fixtures_root / fixture_set), glob="**/*.tif")
    manifest = list_sources(recipe, store_spec(recipe, REPO))
    grids = header_grids(read_batch(recipe, store_spec(recipe, REPO), manifest), manifest["file_id"].to_pylist())
    files = manifest["url"].to_pylist()
    assert all(g is not None for g in grids)
    for path, grid in zip(files, grids):
        ours, gdals = grid, _gdal_grid(path.removeprefix("file://"))
        np.testing.assert_allclose(ours.geotransform, gdals.geotransform, rtol=0, atol=1e-9)
        assert (ours.width, ours.height) == (gdals.width, gdals.height)
    # With every grid known no file is opened: paths that do not exist still give the same layers.
    times = [dt.datetime(2024, 1, 1)] * len(files)
    write_gti([str(tmp_path / f"gone-{i}.tif") for i in range(len(files))], times, tmp_path / "h.gti.gpkg", grids)
    write_gti([p.removeprefix("file://") for p in files], times, tmp_path / "g.gti.gpkg")
    shapes = []
    for name in ("h", "g"):
        vector = gdal.OpenEx(str(tmp_path / f"{name}.gti.gpkg"), gdal.OF_VECTOR)
        shapes.append([f.GetGeometryRef().ExportToWkt() for f in vector.GetLayer(0)])
    assert len(shapes[0]) == len(files)
    for ours, gdals in zip(*shapes):
        assert wkt.loads(ours).equals_exact(wkt.loads(gdals), 1e-9)
MULTI_CRS_RECIPE = {
    "id": "multi-crs", "title": "two UTM zones and a GCP scene, grouped by grid", "format": "cog",
    "source": {"url": "", "pattern": "{time:%Y%m%d}/{tile}_{time:%Y%m%d}_{variable}.tif", "group_by": "grid"},
    "variables": [{"name": "B04"}],
    "concat": {"dim": "time", "from": "filename", "units": "days since 1970-01-01"},
    "output": {"kinds": ["footprints"], "overviews": True},
    "validation": {"sample_chunks": 1},
}


@pytest.fixture(scope="module")
def multi_crs(fixtures_root, tmp_path_factory):
    """One index of the two-zone UTM COGs and the GCP scene (as a third
    'tile' of the first date): `source.group_by: grid` gives an array per
    grid (four UTM tiles, one GCP scene), each in its own group."""
    import os

    base = tmp_path_factory.mktemp("multi-crs")
    src = base / "src"
    for tif in sorted((fixtures_root / "utm-two-zones").rglob("*.tif")):
        (src / tif.parent.name).mkdir(parents=True, exist_ok=True)
        os.link(tif, src / tif.parent.name / tif.name)
    os.link(fixtures_root / "gcp-scene" / "scene_gcp.tif", src / "20240105" / "GCPSCENE_20240105_B04.tif")
    doc = {**MULTI_CRS_RECIPE, "source": {**MULTI_CRS_RECIPE["source"], "url": str(src)}}
    arrays = _assemble(doc, REPO)
    path = base / "multi-crs.footprints.parquet"
    write_footprints(arrays, path)
    return arrays, path


def test_multi_crs_archive_groups_files_by_grid(multi_crs):
    arrays, path = multi_crs
    data = {a.name: a for a in arrays if a.inline is None and "variant_of" not in a.attrs.get("chunkindex", {})}
    level0 = sorted(n for n in data if "/ovr" not in n)
    assert level0 == ["EPSG32755_699960_6300040/B04", "EPSG32755_799980_6300040/B04",
                      "EPSG32756_199980_6300040/B04", "EPSG32756_300000_6300040/B04", "EPSG4326_gcp/B04"]
    assert {n.split("/")[0] + "/x" for n in level0 if "gcp" not in n} <= {a.name for a in arrays}
    assert data["EPSG32756_199980_6300040/B04"].attrs["_CRS"]["url"].endswith("/32756")
    # The GCP scene has one date: its other step has no chunks.
    assert (data["EPSG4326_gcp/B04"].url_index.reshape(2, -1)[1] < 0).all()
    table = pq.read_table(path)
    crs = set(table["native_crs"].to_pylist())
    assert {"EPSG:32755", "EPSG:32756", "EPSG:4326"} <= crs
    # Native bounds are in each chunk's own CRS: UTM metres beside degrees.
    utm = table.filter(pa.compute.equal(table["native_crs"], "EPSG:32756"))
    assert pa.compute.min(utm["native_xmin"]).as_py() >= 199980 - 1
    assert pa.compute.max(utm["native_ymax"]).as_py() <= 6300040 + 1


@pytest.mark.parametrize("bbox", [(149.5, -33.6, 150.5, -33.0), (148.0, -35.0, 152.0, -32.0),
                                  (134.5, -20.8, 135.2, -20.2)])
def test_multi_crs_query_equals_brute_force(multi_crs, bbox):
    """A box across the zone 55 / 56 boundary (150 E) returns chunks of both
    zones' tiles, one over the GCP scene its chunks: exactly the chunks with
    a pixel in the box."""
    arrays, path = multi_crs
    full = [a for a in arrays if "/ovr" not in a.name]
    expected = _brute_force(full, shapely.box(*bbox))
    result = query_index(path, Query(bbox, variable="B04"))
    got = _rows(result.filter(pa.compute.equal(result["level"], 0)))
    assert got == expected and got, f"{bbox}: {len(got - expected)} extra, {len(expected - got)} missing"
    zones = {k[0].split("_")[0] for k in got}
    assert zones == ({"EPSG32755", "EPSG32756"} if bbox[0] < 150 < bbox[2] else {"EPSG4326"})
