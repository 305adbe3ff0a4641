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

.PHONY: run test install repro lint dvc-yaml readme-results

install: $(VENV)/.installed

# torch/torchvision are pinned in pyproject.toml so that one pip call resolves everything together;
# requirements.lock holds the exact versions of the whole environment.
$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -c requirements.lock -e '.[test]' 2>&1 \
		| { grep -v "^WARNING: Location" || true; }
	@touch $@

run: install
	@mkdir -p logs
	snakemake --cores $(CORES) 2>&1 | tee logs/make-run.log
	snakemake --report reports/report.html 2>&1 | tee -a logs/make-run.log

# after `make run`: copy the default run's table into the README's results section
readme-results: install
	cdiff readme-results --tables reports/tiny/tables

repro: install
	dvc repro

test: install
	pytest

lint: install
	snakemake --lint
	cdiff dvc-yaml --check

dvc-yaml: install
	cdiff dvc-yaml --write
