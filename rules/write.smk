# Assemble the arrays and write every index kind the recipe asks for.


rule write:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        headers=header_batches,
        recipe=RECIPE_INPUT,
    output:
        **WRITE_OUTPUTS,
    params:
        base_dir=workflow.basedir,
    log:
        f"{LOGS}/write.log",
    benchmark:
        f"{BENCHMARKS}/write.tsv"
    conda:
        "../envs/chunkindex.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/write_index.py"
