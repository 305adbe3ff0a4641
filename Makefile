# The two commands of the README:
#   make run    install (if needed) and run the default pipeline end to end, offline
#   make test   install (if needed) and run the test suite
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PYTHON ?= python3
CORES ?= all
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export DVC_NO_ANALYTICS := 1

.PHONY: run test install repro lint dvc-yaml readme-results record check-record check-slice

install: $(VENV)/.installed

# torch/torchvision are pinned in pyproject.toml so that one pip call resolves everything together;
# requirements.lock holds the exact versions of the whole environment.
$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -c requirements.lock -e '.[test]' 2>&1 \
		| { grep -v "^WARNING: Location" || true; }
	@touch $@

# logs/make-run.times: wall-clock marks of the two phases (studies/default_run.py reads them)
run: install
	@mkdir -p logs
	@echo "start $$(date +%s.%N)" > logs/make-run.times
	snakemake --cores $(CORES) 2>&1 | tee logs/make-run.log
	@echo "pipeline_done $$(date +%s.%N)" >> logs/make-run.times
	snakemake --report reports/report.html 2>&1 | tee -a logs/make-run.log
	@echo "html_report_done $$(date +%s.%N)" >> logs/make-run.times

# after `make run` of the committed code: write the record (reports/record/<profile>.json: platform, output
# hashes, every reported number) and copy the results table into the README
record: install
	cdiff record --write
	cdiff readme-results --tables reports/tiny/tables

# after `make run`: compare it with the record (bit for bit on the record's platform, else within tolerances)
check-record: install
	cdiff record

# on a clean clone (CI): the default pipeline for the chains of SLICE_METHODS only (with the data, base model
# and evaluator they read), compared file by file with the record (bit for bit on the record's platform)
SLICE_METHODS ?= clora, lora_sequential
check-slice: install
	@for out in runs/tiny results/tiny reports/tiny; do if [ -e "$$out" ]; then \
		echo "make check-slice: $$out exists: the slice runs on a clean clone (after \`make run\`, use \`make check-record\`)" >&2; \
		exit 2; fi; done
	@mkdir -p logs
	snakemake --cores $(CORES) --config 'train={methods: [$(SLICE_METHODS)]}' 2>&1 | tee logs/check-slice.log
	cdiff record --partial 2>&1 | tee -a logs/check-slice.log

# after `make run`: copy the default run's table into the README's results section
readme-results: install
	cdiff readme-results --tables reports/tiny/tables

repro: install
	dvc repro

test: install
	pytest

lint: install
	ruff check
	lint-imports
	snakemake --lint
	cdiff dvc-yaml --check

dvc-yaml: install
	cdiff dvc-yaml --write
