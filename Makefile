# Two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BANGER := $(VENV)/bin/banger

.PHONY: demo test test-all bench lint unit e2e deps test-deps venv docs clean

deps:
	scripts/install-host-deps

test-deps:
	scripts/install-host-deps --test

venv:
	scripts/install-venv

# Pull the default kernel and image (once), then run a command in a fresh VM.
demo: deps venv
	$(BANGER) doctor || true
	$(BANGER) image show debian-bookworm >/dev/null 2>&1 || $(BANGER) image pull debian-bookworm
	$(BANGER) vm run -- uname -a

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy
	# bench/ holds scripts, not a package: each imports bench/figures.py as `figures`.
	MYPYPATH=bench $(VENV)/bin/mypy --no-namespace-packages bench/*.py
	$(VENV)/bin/lint-imports --no-cache

# The Python SDK's reference, generated from its docstrings, into docs/sdk/.
docs:
	scripts/install-venv --group docs
	$(VENV)/bin/pdoc --docformat google --no-show-source -o docs/sdk banger.sdk

unit: venv
	$(VENV)/bin/pytest -m "not e2e" tests

e2e: test-deps venv
	$(VENV)/bin/pytest -m e2e tests

# The whole suite: linters, unit tests, end-to-end tests booting real VMs.
test: test-deps venv lint
	$(VENV)/bin/pytest -m "not slow" --durations=30 tests

# Everything `make test` runs, and the slowest end-to-end tests it leaves out
# to stay within CI's 25 minutes (pytest marker `slow`).
test-all: test-deps venv lint
	$(VENV)/bin/pytest tests

# Every benchmark (minutes; boots VMs), then docs/benchmarks.md and its plots.
bench: test-deps
	scripts/install-venv --group bench
	$(VENV)/bin/python bench/run_all.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
