# The two commands a newcomer needs:  make run  (start the server)  and  make test  (pass the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format proto check-stubs ci clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: create the venv, install, and start the server on ./data (Ctrl-C stops it)
run: $(STAMP)
	$(BIN)/streamstats-server --data-dir ./data

## test: create the venv if needed and run the whole test suite
test: $(STAMP)
	$(BIN)/python -m pytest

## lint: ruff (lint and format check) and mypy
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## proto: regenerate client/streamstats/v1 from proto/
proto: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

## ci: everything CI runs
ci: test lint

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
