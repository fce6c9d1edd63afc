# Open the index with GDAL and compare sampled chunks with the source files.


rule validate:
    input:
        index=VALIDATED_INDEX,
        cri=INDEX.get("cri_parquet", []),
        manifest=f"{RESULTS}/manifest.parquet",
        recipe=RECIPE_INPUT,
    output:
        report=f"{RESULTS}/validation.json",
    params:
        base_dir=workflow.basedir,
    log:
        f"{LOGS}/validate.log",
    benchmark:
        f"{BENCHMARKS}/validate.tsv"
    conda:
        "../envs/chunkindex.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/validate_index.py"
