# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck contracts unit install clean crash-test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/billsync demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest -q tests/billing --cov=billing --cov-branch --cov-fail-under=100 --cov-report=term-missing:skip-covered

test: lint typecheck contracts unit

# SIGKILL `billsync sync` 20 times during a push of 2,000+ invoices; nothing may be duplicated or lost.
crash-test: $(STAMP)
	$(BIN)/python -m tests.crash.crash_test --kills 20

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache billsync-demo
