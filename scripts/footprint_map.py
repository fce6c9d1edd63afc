# Snakemake glue: draw the chunk footprints of the index on a map.
from _step import run_step

from chunkindex.geo.plot import footprint_map

run_step(snakemake.log[0], lambda log: footprint_map(snakemake.input.footprints, snakemake.output.png))
