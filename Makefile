# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck contracts unit install clean crash-test browser scale-test

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

# Debian's Chromium for the browser tests (tests/browser; Playwright's own browser download does not
# work here). Installed only when missing; the tests fail without it when CI is set.
CHROMIUM := /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT      := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

browser:
	@test -x $(CHROMIUM) || $(APT) install -y chromium \
		|| { $(APT) update && $(APT) install -y chromium; }
	@test -x $(CHROMIUM) || { echo "$(CHROMIUM) is still missing" >&2; exit 1; }

unit: $(STAMP) browser
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest -q tests/billing --cov=billing --cov-branch --cov-fail-under=100 --cov-report=term-missing:skip-covered

test: lint typecheck contracts unit

# SIGKILL `billsync sync` 20 times during a push of 2,000+ invoices; nothing may be duplicated or lost.
crash-test: $(STAMP)
	$(BIN)/python -m tests.crash.crash_test --kills 20

# 3 `billsync worker`s (one SIGKILLed midway) and then 1 push 20,000 invoices through the local
# PostgreSQL to sandboxes answering in 20 ms: each exactly once; prints the 3/1 throughput ratio.
SCALE_INVOICES ?= 20000
scale-test: $(STAMP)
	$(BIN)/python -m tests.scale.scale_test --invoices $(SCALE_INVOICES) --latency-ms 20

# Every benchmark in bench/ against its baseline, measured in the same run (about 5 minutes; not in
# CI): one table, bench/results.json, non-zero exit if a goal is missed. Needs the local PostgreSQL.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache billsync-demo
