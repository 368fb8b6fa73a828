# Native stack and developer commands. `make up` runs the pipeline; `make test` runs the tests.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STACK := $(PY) -m iot_pipeline.stack

.PHONY: help setup up down status check test chaos bench lint format logs clean secrets

help:
	@echo "make setup   install everything (virtualenv, Kafka and OpenSearch jars, redis-server)"
	@echo "make up      start the native stack and wait until it is ready"
	@echo "make status  show each service's state, health and memory"
	@echo "make down    stop what 'make up' started"
	@echo "make check   the fast tier: lint, types, unit tests; no stack (about 2 minutes)"
	@echo "make test    everything CI runs: make check, then every tier on the stack"
	@echo "make chaos   the fault tests alone (starts the stack if needed)"
	@echo "make bench   benchmarks with their baselines (starts the stack if needed)"
	@echo "make logs    follow the stack's logs"
	@echo "make secrets generate the container deployment's secrets into secrets/ (once)"

setup:
	@bash scripts/setup.sh

up: setup
	@$(STACK) up

down:
	@if [ -x $(PY) ]; then $(STACK) down; else echo "no virtualenv: nothing to stop"; fi

status:
	@$(STACK) status

check: setup
	@bash scripts/check.sh

test: setup
	@bash scripts/check.sh
	@bash scripts/with-stack.sh bash scripts/test.sh

chaos: setup
	@bash scripts/with-stack.sh $(PY) -m pytest tests/chaos -m chaos

bench: setup
	@bash scripts/with-stack.sh bash -c '$(PY) bench/bench_generator.py && $(PY) bench/bench_processing.py && $(PY) bench/bench_freshness.py && $(PY) bench/bench_live.py && $(PY) bench/bench_sustained.py && $(PY) bench/bench_api.py && $(PY) bench/bench_state_memory.py && bash scripts/peer-venv.sh && $(PY) bench/bench_peer.py'

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

secrets: setup
	@$(PY) -m iot_pipeline.container.secrets generate --dir secrets

logs:
	@tail -n 20 -F .stack/logs/*.log

clean: down
	rm -rf .stack/data .stack/logs .stack/run
