# Snakemake glue: assemble one shard of the write plan from its header batches.
from _step import run_step

from chunkindex.workflow import write_shard_step

run_step(snakemake.log[0], lambda log: write_shard_step(
    snakemake.input.recipe, snakemake.input.manifest, snakemake.input.plan, int(snakemake.wildcards.shard),
    list(snakemake.input.headers), snakemake.output.shard), needs_pandas=False)
