# Snakemake glue: write the index kinds of the recipe from the shards (or append to the index).
from _step import run_step

from chunkindex.workflow import write_step

outputs = {name: path for name, path in snakemake.output.items()}
run_step(snakemake.log[0], lambda log: write_step(
    snakemake.input.recipe, snakemake.input.manifest, list(snakemake.input.headers), outputs,
    snakemake.threads, snakemake.input.plan, list(snakemake.input.shards)), needs_pandas=False)
