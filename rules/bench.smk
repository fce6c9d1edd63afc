# Every benchmark at archive scale (bench/report.py), as one Markdown report
# with plots; `snakemake --config dataset=bench`. The script runs the workflow
# itself in nested snakemake calls (hence --nolock there), so it is a shell
# command of its own rather than a library step.


rule benchmark_report:
    input:
        script="bench/report.py",
    output:
        markdown=report(
            f"{config['results_dir']}/bench/benchmark.md", category="Benchmarks"
        ),
        scaling=report(
            f"{config['results_dir']}/bench/scaling.png", category="Benchmarks"
        ),
    params:
        python=sys.executable,
    log:
        f"{config['results_dir']}/logs/bench/benchmark_report.log",
    benchmark:
        f"{config['results_dir']}/benchmarks/bench/benchmark_report.tsv"
    conda:
        "../envs/chunkindex.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    shell:
        "{params.python} {input.script} --nolock --out $(dirname {output.markdown}) > {log} 2>&1"
