# Snakemake glue: generate one synthetic fixture set.
from pathlib import Path

from chunkindex.synthetic.manifest import FixtureSet, generate_fixture_set
from chunkindex.workflow import run_step

spec = dict(snakemake.params.spec)
spec.pop("benchmark_only", None)
fixture_set = FixtureSet(snakemake.wildcards.fixture_set, spec.pop("kind"), int(snakemake.params.seed), spec)
run_step(snakemake.log[0], lambda log: generate_fixture_set(
    fixture_set, Path(snakemake.output.manifest).parent))
