# List the source files into a manifest, and split it into header batches.
# The batch files (results/<dataset>/batches/) are rewritten only when their
# content changes, so a new file re-reads only the batch it falls in: the
# folder is an update() output, kept rather than deleted before the job.


checkpoint list_sources:
    input:
        recipe=RECIPE_INPUT,
        synthetic=synthetic_inputs,
    output:
        manifest=f"{RESULTS}/manifest.parquet",
        batches=update(directory(f"{RESULTS}/batches")),
    params:
        base_dir=workflow.basedir,
    log:
        f"{LOGS}/list.log",
    benchmark:
        f"{BENCHMARKS}/list.tsv"
    conda:
        "../envs/chunkindex.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/list_sources.py"
