# Snakemake glue: validate the indexes against the sources (Kerchunk through
# GDAL, CRI through the chunkindex.flat reader).
from _step import run_step

from chunkindex.workflow import validate_step

# `index` (Kerchunk) and `cri` (the flat index) are each present when the recipe writes them.
run_step(snakemake.log[0], lambda log: validate_step(
    snakemake.input.recipe, snakemake.input.get("index") or None, snakemake.output.report,
    snakemake.input.get("cri") or None))
