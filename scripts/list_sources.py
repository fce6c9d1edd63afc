# Snakemake glue: list the sources into a manifest and header batches.
from _step import run_step

from chunkindex.workflow import list_step

run_step(snakemake.log[0], lambda log: list_step(
    snakemake.input.recipe, snakemake.params.base_dir, snakemake.output.manifest, snakemake.output.batches), exit_when_done=True, needs_pandas=False)
