# contract-sync developer tasks. Everything runs from ./.venv (created by `make venv`).
#
#   make venv        create .venv (python3): the hashed lock requirements/dev.lock, then the project and devtools/
#   make lock        re-lock requirements/*.lock (uv, with hashes) after changing a dependency
#   make test        ruff check, mypy, lint-imports, pytest tests/ on the local stack (tests/e2e on a secured one)
#   make test-unit   pytest tests/unit only (no services)
#   make lint        ruff check, ruff format --check, mypy, lint-imports (layering)
#   make demo ARGS=  contract-sync demo $(ARGS)
#   make bench ARGS= python -m bench $(ARGS) against the real local stack
#   make stack-up / stack-down   the local Kafka + PostgreSQL (.stack/)
#   make clean       stop the stack, delete .stack/ and tool caches (keeps .venv)
#
# `test` and `bench` use KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL when both are set; otherwise they
# start the local stack if it is not running and stop it afterwards only if they started it.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CS := $(BIN)/contract-sync
PYTEST_FLAGS ?= -p no:cacheprovider -q -ra --strict-markers --durations=15
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv lock test test-unit lint demo bench stack-up stack-down clean

help:
	@sed -n '2,13s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

DEV_LOCK := requirements/dev.lock
RUNTIME_LOCK := requirements/runtime.lock
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock"

venv: $(STAMP)

# Exactly the locked versions (every file checked against its hash), then the project itself and the
# development tools (devtools/: the local stack, the simulator, the demo), their own distribution
# installed here only: the production wheel built from ./pyproject.toml never contains them.
$(STAMP): pyproject.toml devtools/pyproject.toml $(DEV_LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --require-hashes --no-deps -r $(DEV_LOCK)
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e . -e ./devtools
	@touch $@

# Re-lock after changing a dependency in pyproject.toml (a test fails until this ran): the dev lock
# (runtime + dev extra + build back-end) for make venv and CI, the runtime lock for the image.
# It needs no lock to start from: on a fresh checkout it creates .venv and installs uv from the
# range pyproject.toml's dev extra gives (the dev lock then pins uv itself like everything else).
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --disable-pip-version-check -q \
		"$$($(BIN)/python -c 'import tomllib; print(next(r for r in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["dev"] if r.startswith("uv")))')"
	$(UV_COMPILE) --extra dev pyproject.toml requirements/build.in -o $(DEV_LOCK)
	$(UV_COMPILE) pyproject.toml requirements/build.in -o $(RUNTIME_LOCK)
	$(BIN)/python deploy/lock_inputs.py > requirements/inputs.sha256
	@echo "make: locked; commit requirements/"

# with_stack: shell prefix that makes the stack endpoints available to the commands after it.
# It installs an EXIT trap that runs `stack down` only when it ran `stack up` itself, so the
# recipe's exit code is whatever its last command returned.
define with_stack
started=0; \
cleanup() { if [ $$started -eq 1 ]; then echo "make: stopping the stack it started"; $(CS) stack down || true; fi; }; \
trap cleanup EXIT; \
if [ -n "$${KAFKA_BOOTSTRAP_SERVERS:-}" ] && [ -n "$${DATABASE_URL:-}" ]; then \
  echo "make: using KAFKA_BOOTSTRAP_SERVERS=$$KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL from the environment"; \
else \
  if ! $(CS) stack status >/dev/null 2>&1; then started=1; $(CS) stack up || exit 1; \
  else echo "make: local stack already running; leaving it running"; $(CS) stack up >/dev/null || exit 1; fi; \
  eval "$$($(CS) stack env)"; \
fi;
endef

# with_secure_stack: the same for the secured stack in $(SECURE_STACK) (`stack up --secure`: SASL_SSL,
# ACLs, one principal per service), on ports of its own (CONTRACT_SYNC_*_PORT name the PLAINTEXT
# stack's). Its `stack env` adds the admin's KAFKA_SASL_* and each service's credentials.
SECURE_STACK ?= $(CURDIR)/.stack/secure
define with_secure_stack
unset CONTRACT_SYNC_KAFKA_PORT CONTRACT_SYNC_CONTROLLER_PORT CONTRACT_SYNC_PG_PORT; \
export CONTRACT_SYNC_STACK_DIR=$(SECURE_STACK); \
sstarted=0; \
scleanup() { if [ $$sstarted -eq 1 ]; then echo "make: stopping the secured stack it started"; $(CS) stack down || true; fi; }; \
trap scleanup EXIT; \
if ! $(CS) stack status >/dev/null 2>&1; then sstarted=1; $(CS) stack up --secure || exit 1; \
else echo "make: secured stack already running; leaving it running"; fi; \
eval "$$($(CS) stack env)";
endef

# ensure_chromium: the browser tests (tests/e2e/test_console_browser.py) drive Debian's chromium;
# install it when missing and the machine allows it (root + apt-get). Without it those tests skip,
# and under CI=true they fail.
define ensure_chromium
if [ -z "$${CONTRACT_SYNC_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
    echo "make: installing Debian's chromium for the browser tests"; \
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "make: could not install chromium (browser tests skip; under CI=true they fail)"; \
  else echo "make: no chromium and no root apt-get: browser tests skip (under CI=true they fail)"; fi; \
fi;
endef

# pytest exit code 5 means "no tests collected": never let that pass as a success.
define check_pytest
if [ $$prc -eq 5 ]; then echo "make: pytest collected no tests (exit 5) - failing"; fi;
endef

test: venv
	@rc=0; \
	echo "== ruff check ."; $(BIN)/ruff check . || rc=$$?; \
	echo "== mypy"; $(BIN)/mypy || rc=$$?; \
	echo "== lint-imports"; $(BIN)/lint-imports --no-cache || rc=$$?; \
	echo "== chromium"; $(ensure_chromium) \
	if [ -n "$${KAFKA_BOOTSTRAP_SERVERS:-}" ] && [ -n "$${DATABASE_URL:-}" ]; then \
	  echo "== pytest tests"; \
	  prc=0; ( $(with_stack) $(BIN)/pytest $(PYTEST_FLAGS) tests ) || prc=$$?; \
	  $(check_pytest) \
	else \
	  echo "== pytest tests except tests/e2e (PLAINTEXT stack)"; \
	  prc=0; ( $(with_stack) $(BIN)/pytest $(PYTEST_FLAGS) tests --ignore=tests/e2e ) || prc=$$?; \
	  $(check_pytest) \
	  echo "== pytest tests/e2e (secured stack: SASL_SSL, ACLs, a principal per service)"; \
	  eprc=0; ( $(with_secure_stack) $(BIN)/pytest $(PYTEST_FLAGS) tests/e2e ) || eprc=$$?; \
	  if [ $$eprc -eq 5 ]; then echo "make: pytest collected no end-to-end tests (exit 5) - failing"; fi; \
	  if [ $$prc -eq 0 ]; then prc=$$eprc; fi; \
	fi; \
	if [ $$prc -ne 0 ]; then exit $$prc; fi; \
	if [ $$rc -ne 0 ]; then echo "make: tests passed but lint/type checks failed"; fi; \
	exit $$rc

test-unit: venv
	@prc=0; $(BIN)/pytest $(PYTEST_FLAGS) tests/unit || prc=$$?; \
	$(check_pytest) \
	exit $$prc

lint: venv
	@rc=0; \
	$(BIN)/ruff check . || rc=$$?; \
	$(BIN)/ruff format --check . || rc=$$?; \
	$(BIN)/mypy || rc=$$?; \
	$(BIN)/lint-imports --no-cache || rc=$$?; \
	exit $$rc

demo: venv
	$(CS) demo $(ARGS)

bench: venv
	@$(with_stack) \
	$(BIN)/python -m bench $(ARGS)

# chaos: the fault-injection suite (docs/chaos.md) on its own private stack (.stack/chaos, ports
# 29192/29193/29432), never the shared one: it stops and restarts Kafka and PostgreSQL mid-stream.
.PHONY: chaos
chaos: venv
	@$(BIN)/python -m chaos $(ARGS)

stack-up: venv
	$(CS) stack up

stack-down: venv
	$(CS) stack down

clean:
	@if [ -x $(CS) ]; then $(CS) stack down || true; fi
	rm -rf .stack .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
