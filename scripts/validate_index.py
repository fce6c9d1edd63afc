# Snakemake glue: validate the index with GDAL against the sources.
from _step import run_step

from chunkindex.workflow import validate_step

run_step(snakemake.log[0], lambda log: validate_step(
    snakemake.input.recipe, snakemake.input.index, snakemake.output.report,
    snakemake.input.get("cri") or None))  # the CRI index, when the recipe writes one
