# Snakemake glue: generate one synthetic fixture set.
from pathlib import Path

from _step import run_step

from chunkindex.synthetic.manifest import FixtureSet, generate_fixture_set

spec = dict(snakemake.params.spec)
spec.pop("benchmark_only", None)
fixture_set = FixtureSet(snakemake.wildcards.fixture_set, spec.pop("kind"), int(snakemake.params.seed), spec)
run_step(snakemake.log[0], lambda log: generate_fixture_set(
    fixture_set, Path(snakemake.output.manifest).parent))
