# Snakemake glue: assemble the arrays and write the index kinds of the recipe.
from _step import run_step

from chunkindex.workflow import write_step

outputs = {name: path for name, path in snakemake.output.items()}
run_step(snakemake.log[0], lambda log: write_step(
    snakemake.input.recipe, snakemake.input.manifest, list(snakemake.input.headers), outputs,
    snakemake.threads), needs_pandas=False)
