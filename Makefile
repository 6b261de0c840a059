# execdist — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BROKERS ?= 1
export EXECDIST_BROKERS := $(BROKERS)

.PHONY: install up down status run test test-unit check bench bench-quick bench-floor bench-profile bench-broker-profile bench-outage bench-same fanout reliability reliability-quick soak clean help

help:
	@echo "make run      start broker, registry, a worker and a demo feed (Ctrl-C stops all)"
	@echo "make test     install what is missing and run the whole suite against a real broker"
	@echo "make up/down  start/stop the local Kafka broker and schema registry in the background"
	@echo "make check    ruff and mypy"
	@echo "make bench    the full benchmark (about 15 minutes); make bench-quick: about 5 minutes"
	@echo "make bench-floor  the exactly-once hop floor alone (JSON on stdout; BENCH_FLOOR_ARGS=\"--at 1000\")"
	@echo "make bench-outage  a worker restarted after an outage, its orders behind a backlog: confirmed and dead-lettered"
	@echo "make bench-same BASE=rev  the same inputs through BASE's worker and this tree's: the same confirmations?"
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
	@bash scripts/install_promtool.sh
	@bash scripts/test.sh
	@echo "[test] the quick fault-injection set (SIGKILL x3, SIGTERM, bad input, scaling)"
	@bash scripts/reliability.sh quick

test-unit: install
	@bash scripts/install_promtool.sh
	@$(PY) -m pytest tests/unit -q

check: install
	@$(VENV)/bin/ruff check execdist tests scripts bench
	@$(VENV)/bin/mypy execdist bench

reliability: install
	@bash scripts/reliability.sh all

reliability-quick: install
	@bash scripts/reliability.sh quick

soak: install
	@bash scripts/reliability.sh soak

# The benchmark runs its own broker and registry on ports of its own, so that it never meets the
# broker of `make test` (19092) or `make run` (9092). Override with BENCH_KAFKA_PORT etc.
BENCH_KAFKA_PORT ?= 21092
BENCH_CONTROLLER_PORT ?= 21093
BENCH_REGISTRY_PORT ?= 21081
BENCH_REGISTRY_MANAGEMENT_PORT ?= 21082
BENCH_ENV := EXECDIST_INFRA_DIR=$(CURDIR)/.infra/bench \
	EXECDIST_KAFKA_PORT=$(BENCH_KAFKA_PORT) EXECDIST_CONTROLLER_PORT=$(BENCH_CONTROLLER_PORT) \
	EXECDIST_REGISTRY_PORT=$(BENCH_REGISTRY_PORT) \
	EXECDIST_REGISTRY_MANAGEMENT_PORT=$(BENCH_REGISTRY_MANAGEMENT_PORT) \
	EXECDIST_BROKER=127.0.0.1:$(BENCH_KAFKA_PORT) \
	EXECDIST_SCHEMA_REGISTRY_URL=http://127.0.0.1:$(BENCH_REGISTRY_PORT)/apis/ccompat/v7 \
	EXECDIST_KAFKA_FILE_DELETE_DELAY_MS=1000
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	@echo "[install] adding the benchmark's extras (matplotlib for the plot, py-spy for profiles)"
	@$(PY) -m pip install --disable-pip-version-check -q -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: install $(BENCH_STAMP)
	@$(BENCH_ENV) bash scripts/with_infra.sh $(PY) -m bench

bench-quick: install $(BENCH_STAMP)
	@$(BENCH_ENV) bash scripts/with_infra.sh $(PY) -m bench --quick

# The exactly-once hop floor (bench/eos_relay.py) without the rest: prints JSON, writes no results.
# BENCH_FLOOR_ARGS go to `python -m bench.ceilings`, e.g. "--at 1000 --outputs 4 --seconds 6".
BENCH_FLOOR_ARGS ?= --quick
bench-floor: install $(BENCH_STAMP)
	@$(BENCH_ENV) bash scripts/with_infra.sh $(PY) -m bench.ceilings $(BENCH_FLOOR_ARGS)

bench-profile: install $(BENCH_STAMP)
	@$(BENCH_ENV) bash scripts/with_infra.sh $(PY) -m bench.profile $(BENCH_PROFILE_ARGS)

# Where the broker's CPU goes, by request type (Java Flight Recorder on the bench's broker),
# with 1 and 1,000 subscriptions. BENCH_BROKER_ARGS go to `python -m bench.broker_profile`.
bench-broker-profile: install $(BENCH_STAMP)
	@$(BENCH_ENV) bash scripts/with_infra.sh $(PY) -m bench.broker_profile $(BENCH_BROKER_ARGS)

# A worker restarted after an outage whose orders wait behind a backlog (bench/outage.py): what it
# confirms and what it dead-letters. BENCH_OUTAGE_ARGS go to `python -m bench.outage`.
BENCH_OUTAGE_ARGS ?=
bench-outage: install $(BENCH_STAMP)
	@$(BENCH_ENV) bash scripts/with_infra.sh $(PY) -m bench.outage $(BENCH_OUTAGE_ARGS)

# The same inputs through one worker of BASE (a git revision) and one of the working tree
# (bench/same_confirmations.py): the same confirmations and status events, field for field?
BASE ?= HEAD~1
BENCH_SAME_ARGS ?=
bench-same: install $(BENCH_STAMP)
	@$(BENCH_ENV) bash scripts/with_infra.sh $(PY) -m bench.same_confirmations $(BASE) $(BENCH_SAME_ARGS)

# The fan-out bench runs its own broker and registry on ports of its own (not those of
# `make run` or `make test`), so it can run beside either; it starts them afresh, because a
# new worker reads the input topics from the start. FANOUT_ARGS go to bench/fanout.py.
FANOUT_KAFKA_PORT ?= 29192
FANOUT_CONTROLLER_PORT ?= 29193
FANOUT_REGISTRY_PORT ?= 28181
FANOUT_REGISTRY_MANAGEMENT_PORT ?= 28182
FANOUT_ARGS ?=
FANOUT_ENV = EXECDIST_INFRA_DIR=$(CURDIR)/.infra/fanout \
	EXECDIST_KAFKA_PORT=$(FANOUT_KAFKA_PORT) EXECDIST_CONTROLLER_PORT=$(FANOUT_CONTROLLER_PORT) \
	EXECDIST_REGISTRY_PORT=$(FANOUT_REGISTRY_PORT) \
	EXECDIST_REGISTRY_MANAGEMENT_PORT=$(FANOUT_REGISTRY_MANAGEMENT_PORT) \
	EXECDIST_BROKER=127.0.0.1:$(FANOUT_KAFKA_PORT) \
	EXECDIST_SCHEMA_REGISTRY_URL=http://127.0.0.1:$(FANOUT_REGISTRY_PORT)/apis/ccompat/v7
fanout: install $(BENCH_STAMP)
	@$(FANOUT_ENV) bash scripts/infra.sh down >/dev/null
	@$(FANOUT_ENV) bash scripts/with_infra.sh $(PY) -m bench.fanout $(FANOUT_ARGS)

clean: down
	rm -rf $(VENV) data .coverage .coverage.* htmlcov
