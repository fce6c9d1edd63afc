# Synthetic stand-ins for the real archives, byte-reproducible from the seed.


rule fixture_set:
    output:
        manifest=f"{FIXTURES_ROOT}/{{fixture_set}}/MANIFEST.sha256",
    params:
        spec=lookup(dpath="fixtures/sets/{fixture_set}", within=config),
        seed=config["fixtures"]["seed"],
    log:
        f"{config['results_dir']}/logs/fixtures/{{fixture_set}}.log",
    benchmark:
        f"{config['results_dir']}/benchmarks/fixtures/{{fixture_set}}.tsv"
    conda:
        "../envs/chunkindex.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/fixture_set.py"
