# Entry points; see README.md. Every target sets up the environment first
# (seconds when it is already there).
VENV ?= .venv
SNAKEMAKE = $(VENV)/bin/snakemake
CORES ?= 2

.PHONY: setup demo bran-demo fixtures test lint doctor bench clean asan-driver

setup:
	tools/setup.sh

demo: setup
	$(SNAKEMAKE) --cores $(CORES) --config dataset=ghrsst-demo

bran-demo: setup
	$(SNAKEMAKE) --cores $(CORES) --config dataset=bran-demo

fixtures: setup
	$(SNAKEMAKE) --cores $(CORES) --config dataset=fixtures

test: setup
	$(VENV)/bin/python -m pytest

# ruff (rules in pyproject.toml) on the package, scripts, tests, tools and
# benchmarks, then Snakemake's own linter on the workflow.
lint: setup
	$(VENV)/bin/ruff check .
	$(SNAKEMAKE) --lint --config dataset=ghrsst-demo

# Every benchmark at archive scale -> results/bench/benchmark.md (+ PNG plots).
bench: setup
	$(VENV)/bin/python bench/report.py

# The CRI GDAL driver plugin built with AddressSanitizer, its tests run on it.
asan-driver: setup
	tools/test_driver_asan.sh $(VENV)/bin/python

doctor: setup
	$(VENV)/bin/chunkindex doctor

clean:
	rm -rf results logs benchmarks .snakemake
