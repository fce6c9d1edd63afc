# Per-step figures, validation results and plots, as Markdown + PNG.


rule report:
    input:
        validation=f"{RESULTS}/validation.json",
        manifest=f"{RESULTS}/manifest.parquet",
        headers=header_batches,
        header_benchmarks=header_benchmarks,
        list_benchmark=f"{BENCHMARKS}/list.tsv",
        write_benchmark=f"{BENCHMARKS}/write.tsv",
        validate_benchmark=f"{BENCHMARKS}/validate.tsv",
        summary=INDEX.get("summary"),
        recipe=RECIPE_FILE,
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
