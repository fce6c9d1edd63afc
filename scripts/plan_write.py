# Snakemake glue: decide how the index is written (append, or shards of header batches).
from _step import run_step

from chunkindex.workflow import plan_step

run_step(snakemake.log[0], lambda log: plan_step(
    snakemake.input.recipe, snakemake.input.manifest, list(snakemake.input.headers), dict(snakemake.params.outputs),
    int(snakemake.params.shard_refs), snakemake.output.plan), needs_pandas=False)
