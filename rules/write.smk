# Write the index kinds the recipe asks for, in shards (docs/design/sharded-write.md):
#   plan_write  decides: append the new files, or write the whole index from
#               shards of whole header batches (time blocks, config write.shard_refs);
#   write_shard assembles one shard from its header batches alone;
#   write       streams the shards into the index (or appends), state last.


checkpoint plan_write:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        headers=header_batches,
        recipe=RECIPE_INPUT,
    output:
        plan=f"{RESULTS}/write/plan.json",
    params:
        outputs=INDEX,
        shard_refs=config["write"]["shard_refs"],
    log:
        f"{LOGS}/plan_write.log",
    benchmark:
        f"{BENCHMARKS}/plan_write.tsv"
    conda:
        "../envs/chunkindex.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/plan_write.py"


rule write_shard:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        plan=f"{RESULTS}/write/plan.json",
        headers=shard_header_batches,
        recipe=RECIPE_INPUT,
    output:
        shard=temp(directory(f"{RESULTS}/write/shard-{{shard}}")),
    log:
        f"{LOGS}/write_shard-{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/write_shard-{{shard}}.tsv"
    conda:
        "../envs/chunkindex.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../scripts/write_shard.py"


rule write:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
        headers=header_batches,
        plan=write_plan,
        shards=write_shards,
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
        mem_mb=2000,
        runtime=60,
    script:
        "../scripts/write_index.py"
