# chunkindex: chunk-reference indexes of array archives that GDAL reads natively.
#
#   snakemake --cores 2 --config dataset=ghrsst-demo     # one recipe, end to end
#   snakemake --cores 2 --config dataset=fixtures        # every synthetic fixture set
#   snakemake --cores 2 --config dataset=bench           # every benchmark -> results/bench/
#
# Stages: list -> headers (batched) -> write -> validate -> report.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/fixtures.smk"
include: "rules/bench.smk"


# The pipeline rules need a recipe; `dataset=fixtures` only generates fixtures.
if RECIPE is not None:

    include: "rules/list.smk"
    include: "rules/headers.smk"
    include: "rules/write.smk"
    include: "rules/validate.smk"
    include: "rules/report.smk"


rule all:
    input:
        final_targets(),
    default_target: True
