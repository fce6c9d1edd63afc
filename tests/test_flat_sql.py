"""The README's CRI queries, run as written: DuckDB on the Parquet file and
GDAL's `ogrinfo -sql` (OGR Parquet driver), on a GHRSST-like index with
one sparse tile; and the DuckDB and GeoPackage forms of the same table."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from chunkindex.flat import open_index, write_cri_duckdb, write_cri_parquet

README = Path(__file__).resolve().parent.parent / "README.md"
DAYS = 4


def readme_blocks(language: str) -> dict[str, str]:
    """Code blocks of the README's CRI section, by their first comment line."""
    text = README.read_text()
    section = text[text.index("## The flat index (CRI Parquet)"):]
    section = section[: section.index("\n## ", 5)]
    blocks = re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)
    return {block.splitlines()[0].lstrip("-# ").strip(): block for block in blocks}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    import tifffile

    from chunkindex.formats import extractor_for
    from chunkindex.pipeline import quick_recipe, store_spec
    from chunkindex.sources.listing import list_sources

    root = tmp_path_factory.mktemp("demo-sources")
    rng = np.random.default_rng(5)
    for day in range(1, DAYS + 1):
        tifffile.imwrite(root / f"2012010{day}_analysed_sst.tif", rng.integers(0, 999, (300, 700)).astype("<i2"),
                         tile=(128, 128), compression="zstd", predictor=True)
    recipe = quick_recipe("ghrsst-demo", str(root), pattern="{time:%Y%m%d}_{variable}.tif",
                          variables=("analysed_sst",), units="days since 1970-01-01")
    spec = store_spec(recipe, root)
    manifest = list_sources(recipe, spec)
    extractor = extractor_for("cog")
    assembled = extractor.assemble(recipe, manifest, extractor.read_batch(recipe, spec, manifest))
    sst = next(a for a in assembled.arrays if a.name == "analysed_sst")
    sparse = int(np.ravel_multi_index((2, 1, 4), sst.chunk_grid))
    sst.url_index[sparse] = -1  # a sparse tile: no row, reads as fill value
    folder = tmp_path_factory.mktemp("demo-index")
    write_cri_parquet(assembled, folder / "ghrsst-demo.cri.parquet", files=manifest)
    return {"folder": folder, "assembled": assembled, "manifest": manifest, "grid": sst.chunk_grid, "array": sst}


@pytest.fixture
def in_index_folder(demo, monkeypatch):
    monkeypatch.chdir(demo["folder"])
    return demo


def test_readme_duckdb_queries(in_index_folder):
    import duckdb

    demo = in_index_folder
    blocks = readme_blocks("sql")
    assert set(blocks) >= {"one chunk", "one time step in a box of chunk indices",
                           "missing chunks: every chunk index of the grid (from the footer JSON) without a row",
                           "bytes per day (time values from the footer JSON, in days since 1970-01-01)"}
    con = duckdb.connect()
    array = demo["array"]
    number = int(np.ravel_multi_index((1, 0, 2), array.chunk_grid))
    ((path, offset, length),) = con.execute(blocks["one chunk"]).fetchall()
    assert (path, offset, length) == ("20120102_analysed_sst.tif", array.offsets[number], array.sizes[number])
    rows = con.execute(blocks["one time step in a box of chunk indices"]).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(y, x) for y in (0, 1) for x in (1, 2, 3)]
    missing = con.execute(blocks["missing chunks: every chunk index of the grid (from the footer JSON) "
                                 "without a row"]).fetchall()
    assert missing == [(2, 1, 4)]
    per_day = con.execute(blocks["bytes per day (time values from the footer JSON, in days since "
                                 "1970-01-01)"]).fetchall()
    assert [str(r[0]) for r in per_day] == [f"2012-01-0{d}" for d in range(1, DAYS + 1)]
    assert [r[1] for r in per_day] == [18, 18, 17, 18]
    sizes = array.sizes.reshape(DAYS, -1)
    assert per_day[0][2] == int(sizes[0].sum())


def test_readme_ogrinfo_sql(in_index_folder, gdal):
    (command,) = [b for b in readme_blocks("sh").values() if b.startswith("ogrinfo")]
    ogrinfo = shutil.which("ogrinfo", path=str(Path(sys.executable).parent)) or "ogrinfo"
    result = subprocess.run(command.replace("ogrinfo", ogrinfo, 1), shell=True, capture_output=True, text=True,
                            check=True)
    array = in_index_folder["array"]
    number = int(np.ravel_multi_index((1, 0, 2), array.chunk_grid))
    assert "path (String) = 20120102_analysed_sst.tif" in result.stdout
    assert f"offset (Integer64) = {array.offsets[number]}" in result.stdout
    assert f"length (Integer64) = {array.sizes[number]}" in result.stdout


def test_duckdb_form_holds_the_same_table(demo, tmp_path):
    import duckdb

    target = write_cri_duckdb(demo["assembled"], tmp_path / "ghrsst-demo.cri.duckdb", files=demo["manifest"])
    con = duckdb.connect(str(target), read_only=True)
    assert {r[0] for r in con.execute("SHOW TABLES").fetchall()} >= {"chunks", "files", "arrays", "cri", "chunk_refs"}
    parquet = pq.read_table(demo["folder"] / "ghrsst-demo.cri.parquet")
    ours = con.execute('SELECT variable, level, c0, c1, c2, path, "offset", length FROM chunk_refs '
                       "ORDER BY variable, level, c0, c1, c2").fetchall()
    theirs = list(zip(*(parquet[c].to_pylist() for c in ("variable", "level", "c0", "c1", "c2", "path", "offset",
                                                          "length"))))
    assert ours == theirs
    ((n_files,),) = con.execute("SELECT count(*) FROM files WHERE size > 0 AND etag IS NOT NULL").fetchall()
    assert n_files == DAYS
    ((dims,),) = con.execute("SELECT dims FROM arrays WHERE variable = 'analysed_sst'").fetchall()
    assert dims == ["time", "y", "x"]
    ((version,),) = con.execute("SELECT document->>'$.cri_version' FROM cri").fetchall()
    assert version == "0.1"


def test_geopackage_form_holds_the_same_table(demo, tmp_path, gdal):
    import json

    from osgeo import ogr

    from chunkindex.flat import write_cri_gpkg

    target = write_cri_gpkg(demo["assembled"], tmp_path / "ghrsst-demo.cri.gpkg", files=demo["manifest"])
    ds = ogr.Open(str(target))
    layer = ds.GetLayerByName("chunks")
    doc = json.loads(layer.GetMetadataItem("cri"))
    assert doc["arrays"]["analysed_sst"]["dims"] == ["time", "y", "x"]
    parquet = pq.read_table(demo["folder"] / "ghrsst-demo.cri.parquet")
    assert layer.GetFeatureCount() == parquet.num_rows
    sql = ds.ExecuteSQL("SELECT path, \"offset\", length FROM chunks WHERE variable = 'analysed_sst' "
                        "AND level = 0 AND c0 = 1 AND c1 = 0 AND c2 = 2")
    feature = sql.GetNextFeature()
    array = demo["array"]
    number = int(np.ravel_multi_index((1, 0, 2), array.chunk_grid))
    assert (feature["path"], feature["offset"], feature["length"]) == (
        "20120102_analysed_sst.tif", array.offsets[number], array.sizes[number])
    ds.ReleaseResultSet(sql)
    index = ds.ExecuteSQL("SELECT sql FROM sqlite_master WHERE name = 'chunks_key'")
    assert "UNIQUE" in index.GetNextFeature()["sql"].upper()
    ds.ReleaseResultSet(index)


def test_reader_reads_the_demo_index(demo):
    index = open_index(demo["folder"] / "ghrsst-demo.cri.parquet")
    values = index.read("analysed_sst", (slice(2, 3), slice(128, 256), slice(512, 640)))
    assert (values == 0).all()  # the sparse tile: fill value 0 (no nodata)
