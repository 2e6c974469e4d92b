# Bill Pay Sync — every command a developer or CI needs. `make run` and `make test` bootstrap themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
# Lambda runs python3.13: use it for the virtualenv where pyenv has it, else the machine's python3.
BASE_PY   := $(shell if PYENV_VERSION=3.13.0 python3.13 -c pass 2>/dev/null; then echo "env PYENV_VERSION=3.13.0 python3.13"; else echo python3; fi)
STAMP     := $(VENV)/.installed

.PHONY: help venv run test lint typecheck unit integration bench drill build validate deploy resolve clean

help:
	@echo "make run    — start the whole system locally (API :3000, Codat sandbox :4100, AWS emulator :4566)"
	@echo "make test   — lint, typecheck and the full test suite"
	@echo "make bench  — benchmarks; writes bench/results.json and bench/RESULTS.md"
	@echo "make build | validate | deploy — SAM build (python3.13/arm64, no Docker), lint the template, deploy"

$(STAMP): requirements-dev.txt layers/billpay/requirements.txt
	@test -x $(PY) || $(BASE_PY) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m local.stack

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy layers/billpay functions local tests bench

test: $(STAMP) lint typecheck
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
