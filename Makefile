# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench install clean

demo: $(STAMP)
	POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/meterbill demo

test: $(STAMP) lint typecheck unit

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/cfn-lint template.yaml

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# Cost and speed figures (docs/capacity.md): a table on stdout, the same figures as JSON in
# $(BENCH_OUT). About three minutes on two cores.
BENCH_OUT ?= bench-results.json

bench: $(STAMP)
	BENCH_OUT=$(BENCH_OUT) POWERTOOLS_LOG_LEVEL=WARNING $(BIN)/python -m tests.bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
