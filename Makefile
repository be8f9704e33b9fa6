# Two entry points (see README): `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: run test lint bench clean-results

$(BIN)/dyce: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(BIN)/dyce

run: $(BIN)/dyce
	$(BIN)/snakemake --profile profiles/local --cores $(CORES)

test: $(BIN)/dyce
	$(BIN)/python -m pytest -n $(CORES) --dist loadgroup

lint: $(BIN)/dyce
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check workflow
	$(BIN)/snakemake --lint --cores 1

bench: $(BIN)/dyce
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/model.py
	$(BIN)/python benchmarks/runtime.py
	$(BIN)/python benchmarks/workflow.py

clean-results:
	rm -rf results logs .snakemake benchmarks/search
