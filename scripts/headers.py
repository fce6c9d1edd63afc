# Snakemake glue: read the headers of one batch of files.
from _step import run_step

from chunkindex.workflow import headers_step

run_step(snakemake.log[0], lambda log: headers_step(
    snakemake.input.recipe, snakemake.params.base_dir, snakemake.input.batch, snakemake.output.levels), exit_when_done=True, needs_pandas=False)
