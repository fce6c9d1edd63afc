# Read the headers of one batch of files (TIFF IFDs, or NetCDF4/HDF5 chunk
# tables) into an Arrow table; batches are independent jobs.


rule headers:
    input:
        batch=f"{RESULTS}/batches/batch-{{batch}}.parquet",
        recipe=RECIPE_INPUT,
    output:
        levels=f"{RESULTS}/headers/batch-{{batch}}.arrow",
    params:
        base_dir=workflow.basedir,
        header_format=HEADER_FORMAT_VERSION,
    log:
        f"{LOGS}/headers-{{batch}}.log",
    benchmark:
        f"{BENCHMARKS}/headers-{{batch}}.tsv"
    conda:
        "../envs/chunkindex.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../scripts/headers.py"
