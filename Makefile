# Set-up: `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STAMP_TEST := $(VENV)/.installed-test

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $@ $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m loyalty_cli.demo

# One worker per core (pytest-xdist); the longest tests are shared out as workers free up.
test: $(STAMP_TEST)
	$(BIN)/python -m pytest -n auto --dist worksteal

lint: $(STAMP_TEST)
	$(BIN)/ruff check loyalty_cli tests bench
	$(BIN)/ruff format --check loyalty_cli tests bench
	$(BIN)/mypy loyalty_cli

bench: $(STAMP_TEST)
	$(BIN)/python -m compileall -q loyalty_cli
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
