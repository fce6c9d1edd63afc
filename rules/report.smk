# Per-step figures, validation results and plots, as Markdown + PNG.


rule report:
    input:
        validation=f"{RESULTS}/validation.json",
        manifest=f"{RESULTS}/manifest.parquet",
        headers=header_batches,
        header_benchmarks=header_benchmarks,
        list_benchmark=f"{BENCHMARKS}/list.tsv",
        plan=write_plan,
        write_benchmark=f"{BENCHMARKS}/write.tsv",
        validate_benchmark=f"{BENCHMARKS}/validate.tsv",
        summary=INDEX.get("summary"),
        recipe=RECIPE_INPUT,
        footprint_map=FOOTPRINT_MAP,
    output:
        markdown=report(f"{RESULTS}/report/report.md", category="Report"),
        steps_plot=report(f"{RESULTS}/report/steps.png", category="Plots"),
        refs_plot=report(f"{RESULTS}/report/refs.png", category="Plots"),
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCHMARKS}/report.tsv"
    conda:
        "../envs/chunkindex.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    script:
        "../scripts/report.py"


if FOOTPRINT_MAP:

    # The chunk footprints on a lon/lat map, coloured by time (recipes with footprints).
    rule footprint_map:
        input:
            footprints=INDEX["footprints_parquet"],
        output:
            png=report(FOOTPRINT_MAP, category="Plots"),
        log:
            f"{LOGS}/footprint_map.log",
        benchmark:
            f"{BENCHMARKS}/footprint_map.tsv"
        conda:
            "../envs/chunkindex.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=20,
        script:
            "../scripts/footprint_map.py"
