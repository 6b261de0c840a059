# execdist — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BROKERS ?= 1
export EXECDIST_BROKERS := $(BROKERS)

.PHONY: install up down status run test test-unit check bench fanout reliability reliability-quick soak clean help

help:
	@echo "make run      start broker, registry, a worker and a demo feed (Ctrl-C stops all)"
	@echo "make test     install what is missing and run the whole suite against a real broker"
	@echo "make up/down  start/stop the local Kafka broker and schema registry in the background"
	@echo "make check    ruff and mypy"
	@echo "make reliability  fault injection (SIGKILL/SIGTERM/SIGSTOP, broker kill on 3 brokers, bad input, soak)"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 1; }
	@echo "[install] creating $(VENV) and installing execdist with its dev tools"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	@$(PY) -m pip install --disable-pip-version-check --progress-bar on -e '.[dev]'
	@$(PY) scripts/coverage_hook.py install
	@touch $(STAMP)

install: $(STAMP)
	@bash scripts/infra.sh install

up: install
	@bash scripts/infra.sh up

down:
	@bash scripts/infra.sh down

status:
	@bash scripts/infra.sh status

run: install
	@bash scripts/run.sh

test: install
	@bash scripts/install_browser.sh
	@bash scripts/test.sh

test-unit: install
	@$(PY) -m pytest tests/unit -q

check: install
	@$(VENV)/bin/ruff check execdist tests scripts
	@$(VENV)/bin/mypy execdist

reliability: install
	@bash scripts/reliability.sh all

reliability-quick: install
	@bash scripts/reliability.sh quick

soak: install
	@bash scripts/reliability.sh soak

fanout: install
	@bash scripts/with_infra.sh $(PY) -m bench.fanout

clean: down
	rm -rf $(VENV) data .coverage .coverage.* htmlcov
