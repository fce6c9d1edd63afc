# Loads and validates the config and the chosen recipe before any work.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

sys.path.insert(0, workflow.basedir)

from chunkindex.formats import HEADER_FORMAT_VERSION
from chunkindex.indexes.sharded import WritePlan
from chunkindex.recipe import RecipeError, load_recipe, validate_config
from chunkindex.workflow import BATCH_FORMAT, SHARD_FORMAT, batch_ids, clear_interrupted_write, index_outputs

try:
    validate_config(config)
except RecipeError as exc:
    raise WorkflowError(str(exc))

DATASET = config["dataset"]
RESULTS = f"{config['results_dir']}/{DATASET}"
FIXTURES_ROOT = config["fixtures"]["root"]
FIXTURE_SETS = config["fixtures"]["sets"]
# Logs and benchmark figures live with the results, so that runs with another
# results_dir never overwrite each other's.
LOGS = f"{config['results_dir']}/logs/{DATASET}"
BENCHMARKS = f"{config['results_dir']}/benchmarks/{DATASET}"

if DATASET in ("fixtures", "bench"):
    RECIPE_FILE = None
    RECIPE = None
else:
    RECIPE_FILE = f"{config['recipes_dir']}/{DATASET}.yaml"
    try:
        RECIPE = load_recipe(RECIPE_FILE)
    except FileNotFoundError:
        known = sorted(p.stem for p in Path(config["recipes_dir"]).glob("*.yaml"))
        raise WorkflowError(
            f"dataset {DATASET!r}: no recipe {RECIPE_FILE}; known datasets: "
            + ", ".join(known + ["fixtures", "bench"])
        )
    except RecipeError as exc:
        raise WorkflowError(str(exc))
    if RECIPE.source.synthetic and RECIPE.source.synthetic not in FIXTURE_SETS:
        raise WorkflowError(
            f"recipe {RECIPE_FILE}: field source.synthetic names fixture set "
            f"{RECIPE.source.synthetic!r}, which config fixtures.sets does not define "
            f"(defined: {', '.join(sorted(FIXTURE_SETS))})"
        )

# The recipe is a workflow source (versioned with it): with a default storage
# provider (profiles/kubernetes) it stays a local file, shipped to the jobs in
# Snakemake's source archive, instead of an object expected in the bucket.
RECIPE_INPUT = local(RECIPE_FILE) if RECIPE_FILE else None

INDEX = index_outputs(RESULTS, DATASET, RECIPE) if RECIPE else {}
# What GDAL validates: the Kerchunk index (one is written under validation/
# when the recipe asks for no Kerchunk kind).
VALIDATED_INDEX = INDEX.get("kerchunk_parquet", INDEX.get("kerchunk_json"))
# The report's footprint map, for recipes with footprints ([] otherwise).
FOOTPRINT_MAP = f"{RESULTS}/report/footprints.png" if "footprints_parquet" in INDEX else []
# The write rule's outputs; the Kerchunk Parquet index is a folder. The index,
# its summary and state are updated in place when new files can be appended
# (Snakemake keeps them, backed up, instead of deleting them first).
APPENDABLE = {"kerchunk_parquet", "cri_parquet", "summary", "state"}
WRITE_OUTPUTS = {
    name: (directory(path) if name == "kerchunk_parquet" else path)
    for name, path in INDEX.items()
}
WRITE_OUTPUTS = {
    name: update(path) if name in APPENDABLE else path
    for name, path in WRITE_OUTPUTS.items()
}


onstart:
    # A job killed (kill -9, node failure) while it updates update() outputs
    # (the index, the listing's batches/) leaves Snakemake's backup of them
    # behind, which fails every later run: clear it.
    if RECIPE is not None:
        for path in clear_interrupted_write(
            [INDEX[name] for name in APPENDABLE if name in INDEX] + [f"{RESULTS}/batches"],
            list(INDEX.values()) + [f"{RESULTS}/manifest.parquet", f"{RESULTS}/write/plan.json"],
            workflow.persistence.path,
        ):
            print(f"chunkindex: removed {path} (left by an interrupted job)", file=sys.stderr)


wildcard_constraints:
    fixture_set="[a-z0-9][a-z0-9-]*",
    batch=r"\d{5}",
    shard=r"\d{5}",


def fixture_manifest(name):
    return f"{FIXTURES_ROOT}/{name}/MANIFEST.sha256"


def synthetic_inputs(wildcards):
    """The fixture set a demo recipe reads, so the workflow generates it first."""
    if RECIPE is not None and RECIPE.source.synthetic:
        return [fixture_manifest(RECIPE.source.synthetic)]
    return []


def header_batches(wildcards):
    """Every header batch of the listing (known once the list checkpoint ran)."""
    manifest = checkpoints.list_sources.get().output.manifest
    return [f"{RESULTS}/headers/batch-{b}.arrow" for b in batch_ids(manifest)]


def write_plan(wildcards):
    """The write plan (known once the plan_write checkpoint ran)."""
    return checkpoints.plan_write.get().output.plan


def write_shards(wildcards):
    """The shard folders the plan asks for (none when it appends)."""
    plan = WritePlan.read(checkpoints.plan_write.get().output.plan)
    if plan.mode != "write":
        return []
    return [f"{RESULTS}/write/shard-{SHARD_FORMAT.format(i)}" for i in range(len(plan.shards))]


def shard_header_batches(wildcards):
    """The header batches holding the files of one shard."""
    plan = WritePlan.read(checkpoints.plan_write.get().output.plan)
    number = int(wildcards.shard)
    # A shard of the plan's previous version, before the checkpoint reran:
    # no longer needed once the DAG is updated (the job refuses to run).
    if number >= len(plan.shards):
        return []
    return [f"{RESULTS}/headers/batch-{BATCH_FORMAT.format(b)}.arrow" for b in plan.shards[number].batches]


def header_benchmarks(wildcards):
    manifest = checkpoints.list_sources.get().output.manifest
    return [f"{BENCHMARKS}/headers-{b}.tsv" for b in batch_ids(manifest)]


def final_targets():
    if DATASET == "bench":
        return [f"{config['results_dir']}/bench/benchmark.md"]
    if DATASET == "fixtures":
        return [
            fixture_manifest(name)
            for name, spec in FIXTURE_SETS.items()
            if not spec.get("benchmark_only", False)
        ]
    return [f"{RESULTS}/validation.json", f"{RESULTS}/report/report.md"]
