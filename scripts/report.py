# Snakemake glue: write the Markdown report and its plots.
from pathlib import Path

from _step import run_step

from chunkindex.report import ReportInputs, shard_benchmarks, write_report

# The write step's benchmarks folder: the shard jobs' files are read from it,
# not declared as inputs (a missing one would make Snakemake rerun its shard).
BENCHMARKS = Path(snakemake.input.write_benchmark).parent
# One path for recipes with footprints; an empty input list otherwise.
FOOTPRINT_MAP = snakemake.input.footprint_map
FOOTPRINT_MAP = FOOTPRINT_MAP if isinstance(FOOTPRINT_MAP, str) else next(iter(FOOTPRINT_MAP), None)

inputs = ReportInputs(
    recipe=snakemake.input.recipe,
    manifest=snakemake.input.manifest,
    validation=snakemake.input.validation,
    headers=list(snakemake.input.headers),
    benchmarks={
        "list": [snakemake.input.list_benchmark],
        "headers": list(snakemake.input.header_benchmarks),
        "plan_write": [str(BENCHMARKS / "plan_write.tsv")],
        "write_shard": shard_benchmarks(snakemake.input.plan, str(BENCHMARKS)),
        "write": [snakemake.input.write_benchmark],
        "validate": [snakemake.input.validate_benchmark],
    },
    write_summary=snakemake.input.summary,
    footprint_map=FOOTPRINT_MAP,
)
run_step(snakemake.log[0], lambda log: write_report(
    inputs, snakemake.output.markdown, snakemake.output.steps_plot, snakemake.output.refs_plot))
