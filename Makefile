# sysmon-faust — the commands of the README. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
BENCH_VENV := $(VENV)/quix
KAFKA_PORT ?= 9092
KAFKA_DATA_DIR ?= .kafka
DEMO_DIR ?= .demo
SYSMON_WEB_PORT ?= 6066
export KAFKA_PORT KAFKA_DATA_DIR SYSMON_WEB_PORT

# The local broker serves unless KAFKA_BOOTSTRAP_SERVERS names another cluster.
# (Not exported: `make test` starts a broker of its own when it is unset.)
LOCAL_BROKER := $(if $(KAFKA_BOOTSTRAP_SERVERS),,yes)
BOOTSTRAP := $(or $(KAFKA_BOOTSTRAP_SERVERS),127.0.0.1:$(KAFKA_PORT))

.PHONY: help install compile test lint docs format kafka-up kafka-down broker worker demo stop bench bench-churn chaos clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: $(VENV)/.compiled ## create .venv, install the package with its dev extras, compile its hot core

$(VENV)/.installed: pyproject.toml setup.py
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	SYSMON_COMPILE=0 PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

# The core's per-event modules compiled by mypyc, in place (sysmon_faust/core/compiled.py),
# again whenever a core source changes; SYSMON_COMPILE=0 removes them (plain Python).
CORE_SOURCES := $(shell find sysmon_faust/core -name '*.py')
$(VENV)/.compiled: $(VENV)/.installed $(CORE_SOURCES)
	find sysmon_faust -name '*.so' -delete
	rm -f sysmon_faust_core__mypyc*.so
	@[ "$${SYSMON_COMPILE:-1}" = 0 ] || echo "compiling the core with mypyc (about 2 minutes; SYSMON_COMPILE=0 to skip)"
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet --no-deps -e .
	@touch $@

compile: ## compile the core's per-event modules again after editing them (SYSMON_COMPILE=0: remove them)
	@rm -f $(VENV)/.compiled
	@$(MAKE) --no-print-directory $(VENV)/.compiled

# The bench extra (quixstreams, for bench/quix_peer.py) in a venv of its own:
# quixstreams brings rocksdict and pins confluent-kafka below 2.13; the workers'
# venv stays as CI and users install it. Only make bench needs it.
$(BENCH_VENV)/.installed: pyproject.toml $(VENV)/.installed
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet $$($(PYTHON) -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['bench']))")
	@touch $@

# Two tests at a time (pytest-xdist): the integration tests mostly wait, for
# sessions to end and workers to restart. How they are shared out: tests/conftest.py.
test: install ## unit + integration tests against a real broker (started by the tests)
	$(BIN)/pytest -n 2

lint: install ## ruff, mypy, the import contracts (pure core, layers, no circle), a strict docs build
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy sysmon_faust
	$(BIN)/lint-imports
	@site=$$(mktemp -d) && trap 'rm -rf "$$site"' EXIT && \
	  echo "$(BIN)/mkdocs build --strict --site-dir $$site" && \
	  NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir "$$site"

docs: install ## the docs site into site/ (live preview: .venv/bin/mkdocs serve)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

format: install ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

kafka-up: ## start the local single-node Kafka (KRaft) on 127.0.0.1:$KAFKA_PORT
	@kafka/kafka.sh up

kafka-down: ## stop the local Kafka started from $KAFKA_DATA_DIR
	@kafka/kafka.sh down

broker:
	@$(if $(LOCAL_BROKER),kafka/kafka.sh up,echo "using Kafka at $$KAFKA_BOOTSTRAP_SERVERS")

worker: install broker ## run one worker in the foreground
	KAFKA_BOOTSTRAP_SERVERS=$(BOOTSTRAP) $(BIN)/faust -A sysmon_faust worker -l info --web-port $(SYSMON_WEB_PORT)

demo: install broker ## broker + worker + replay of a recording, then what came out
	@KAFKA_BOOTSTRAP_SERVERS=$(BOOTSTRAP) $(BIN)/python -m sysmon_faust.cli.demo --state-dir $(DEMO_DIR)

bench: install $(BENCH_VENV)/.installed broker ## the benchmark, Quix Streams beside it (knobs: make bench BENCH_ARGS="--events 500000")
	KAFKA_BOOTSTRAP_SERVERS=$(BOOTSTRAP) $(BIN)/python bench/run.py $(BENCH_ARGS)

bench-churn: install broker ## the process table under churn: rows, RocksDB and RSS plateau
	KAFKA_BOOTSTRAP_SERVERS=$(BOOTSTRAP) $(BIN)/python bench/churn.py $(BENCH_ARGS)

chaos: install broker ## kill the worker, wipe its state, restart the broker: count what is lost
	KAFKA_BOOTSTRAP_SERVERS=$(BOOTSTRAP) $(BIN)/python bench/chaos.py $(CHAOS_ARGS)

stop: ## stop the demo worker and the local broker
	@[ ! -x $(BIN)/python ] || $(BIN)/python -m sysmon_faust.cli.demo --state-dir $(DEMO_DIR) --stop 2>/dev/null || true
	@kafka/kafka.sh down

clean: stop ## stop everything and remove local state (broker data, RocksDB, demo)
	rm -rf $(KAFKA_DATA_DIR) data $(DEMO_DIR) .kafka-test
