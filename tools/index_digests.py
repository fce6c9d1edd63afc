"""sha256 of every file of the demo indexes, to prove that a change of code
leaves the written indexes byte-identical (tests/test_output_unchanged.py).

    python tools/index_digests.py            # re-record tests/data/index-digests.json
    python tools/index_digests.py --check    # compare with the recorded digests

For each demo dataset the recipe is run as the workflow runs it (listing,
header batches of `headers.batch_size`, one write of every `output.kinds`)
into a temporary folder, on the synthetic fixture sets (generated from the
config's seed when missing). Two things are pinned so that the bytes depend
on the code alone:

* References are written under `source.public_url` =
  `https://chunkindex.invalid/fixtures/<set>` instead of the checkout's
  absolute path, so the digests do not depend on where the repository is.
* `OGR_CURRENT_DATE` is fixed: GDAL's GeoPackage driver otherwise stamps
  the time of writing into `gpkg_contents.last_change`.
* The listing's etags and modification times (the CRI index records them
  beside each row's `path`) are left empty.

The summary (timings) and the workflow's state file (source modification
times) are not index files and are not hashed.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DATASETS = ("ghrsst-demo", "ghrsst-demo-deflate", "bran-demo")
DIGESTS = REPO / "tests" / "data" / "index-digests.json"
PUBLIC_BASE = "https://chunkindex.invalid/fixtures"
OGR_CURRENT_DATE = "2000-01-01T00:00:00Z"
# Output kind -> (write_index output name, file name suffix), as the workflow names them.
KINDS = {
    "kerchunk-parquet": [("kerchunk_parquet", ".parq")],
    "kerchunk-json": [("kerchunk_json", ".json")],
    "cri-parquet": [("cri_parquet", ".cri.parquet")],
    "cri-gpkg": [("cri_gpkg", ".cri.gpkg")],
    # A DuckDB database file differs from write to write (block layout,
    # headers): not written here; the Parquet and GeoPackage forms hold the same rows.
    "cri-duckdb": [],
    "footprints": [("footprints_parquet", ".footprints.parquet"), ("footprints_gpkg", ".footprints.gpkg"),
                   ("footprints_fgb", ".footprints.fgb")],
    "vrt": [("vrt", ".vrt")],
}


def ensure_fixture_sets(root: Path, names: list[str]) -> None:
    """Generate the fixture sets `names` into `root` unless already there."""
    import yaml

    from chunkindex.synthetic.manifest import MANIFEST_NAME, FixtureSet, generate_fixture_set

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["fixtures"]
    for name in names:
        if (root / name / MANIFEST_NAME).is_file():
            continue
        spec = dict(config["sets"][name])
        spec.pop("benchmark_only", None)
        generate_fixture_set(FixtureSet(name, spec.pop("kind"), int(config["seed"]), spec), root / name)


def write_demo_index(dataset: str, fixtures_root: Path, out: Path) -> Path:
    """Write every index kind of recipe `dataset` into `out/<dataset>/`."""
    import pyarrow as pa

    from chunkindex.formats import extractor_for
    from chunkindex.pipeline import store_spec, write_index
    from chunkindex.recipe import load_recipe
    from chunkindex.sources.listing import list_sources

    recipe = load_recipe(REPO / "recipes" / f"{dataset}.yaml")
    fixture_set = recipe.source.synthetic
    source = dataclasses.replace(recipe.source, url=str(fixtures_root / fixture_set),
                                 public_url=f"{PUBLIC_BASE}/{fixture_set}")
    recipe = dataclasses.replace(recipe, source=source)
    spec = store_spec(recipe, "/")
    manifest = list_sources(recipe, spec)
    # The CRI index records each file's etag and modification time, which
    # depend on the checkout: pinned like the URLs.
    manifest = manifest.set_column(manifest.schema.get_field_index("etag"), "etag",
                                   pa.nulls(manifest.num_rows, pa.string()))
    manifest = manifest.set_column(manifest.schema.get_field_index("last_modified"), "last_modified",
                                   pa.nulls(manifest.num_rows, manifest.schema.field("last_modified").type))
    extractor = extractor_for(recipe.format)
    size = recipe.headers.batch_size
    batches = [extractor.read_batch(recipe, spec, manifest.slice(start, size))
               for start in range(0, manifest.num_rows, size)]
    folder = out / dataset
    outputs = {name: str(folder / f"{dataset}{suffix}")
               for kind in recipe.output.kinds for name, suffix in KINDS[kind]}
    if "footprints" not in recipe.output.kinds:
        write_index(recipe, manifest, pa.concat_tables(batches), outputs)
        return folder
    from osgeo import gdal

    previous = gdal.GetConfigOption("OGR_CURRENT_DATE")
    gdal.SetConfigOption("OGR_CURRENT_DATE", OGR_CURRENT_DATE)
    try:
        write_index(recipe, manifest, pa.concat_tables(batches), outputs)
    finally:
        gdal.SetConfigOption("OGR_CURRENT_DATE", previous)
    return folder


def file_digests(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `folder`."""
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def compute(fixtures_root: Path, work: Path, datasets: tuple[str, ...] = DATASETS) -> dict[str, dict[str, str]]:
    """Digests of every file of each dataset's indexes, written under `work`."""
    from chunkindex.recipe import load_recipe

    sets = sorted({load_recipe(REPO / "recipes" / f"{d}.yaml").source.synthetic for d in datasets})
    ensure_fixture_sets(fixtures_root, sets)
    return {d: file_digests(write_demo_index(d, fixtures_root, work)) for d in datasets}


def differences(recorded: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """One line per dataset file that differs, appeared or went missing."""
    lines = []
    for dataset in sorted(set(recorded) | set(found)):
        old, new = recorded.get(dataset, {}), found.get(dataset, {})
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                what = "new" if name not in old else "missing" if name not in new else "differs"
                lines.append(f"{dataset}/{name}: {what}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the recorded digests instead")
    parser.add_argument("--fixtures", type=Path, default=REPO / "resources" / "fixtures",
                        help="fixture sets folder (missing sets are generated)")
    parser.add_argument("--out", type=Path, default=DIGESTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        found = compute(args.fixtures.resolve(), Path(work))
    if args.check:
        problems = differences(json.loads(args.out.read_text()), found)
        print("\n".join(problems) or f"identical to {args.out}")
        return 1 if problems else 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    print(f"wrote {sum(map(len, found.values()))} digests of {len(found)} datasets to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
