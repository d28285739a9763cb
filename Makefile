# The two commands a newcomer needs:  make run  (start the server)  and  make test  (pass the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format proto ci clean bench bench-durability bench-stats dev-certs loadtest loadtest-host

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

## dev-certs: a development CA, server and client certificates and tokens in ./secrets (ARGS=--force to renew)
dev-certs: $(STAMP)
	$(BIN)/python scripts/dev_certs.py $(ARGS)

## proto: regenerate client/streamstats/v1 from proto/
proto: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

## ci: everything CI runs
ci: test lint

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# -- the locust load test (loadtest/; README "Load testing") ------------------------------------------
USERS ?= 20
SPAWN_RATE ?= 10
RUN_TIME ?= 30s
WORKERS ?= 0
RESULTS ?= results
LOADTEST_FLAGS = --users $(USERS) --spawn-rate $(SPAWN_RATE) --run-time $(RUN_TIME) --workers $(WORKERS) --results $(RESULTS)

.PHONY: loadtest loadtest-host

## loadtest: start a server (in memory) and load-test it headless: make loadtest [USERS=20 RUN_TIME=30s WORKERS=0 ARGS=...]
loadtest: $(STAMP)
	$(BIN)/python -m loadtest.run $(LOADTEST_FLAGS) $(if $(ARGS),-- $(ARGS))

## loadtest-host: the same against a running server: make loadtest-host HOST=127.0.0.1:50051
loadtest-host: $(STAMP)
	@test -n "$(HOST)" || { echo "usage: make loadtest-host HOST=host:port [USERS=.. RUN_TIME=.. WORKERS=.. ARGS=..]" >&2; exit 2; }
	$(BIN)/python -m loadtest.run --host $(HOST) $(LOADTEST_FLAGS) $(if $(ARGS),-- $(ARGS))

## bench: the benchmark suite (about 5 minutes; needs redis-server for the Redis table); rewrites docs/BENCHMARKS.md
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/suite.py

## bench-stats: GetStats latency and the cost of 1,000 watchers on ingest; rewrites its section of docs/BENCHMARKS.md
bench-stats: $(STAMP)
	$(BIN)/python bench/stats_watch.py

## bench-durability: ingest per --fsync policy and restart time; rewrites its section of docs/BENCHMARKS.md
bench-durability: $(STAMP)
	$(BIN)/python bench/durability.py

