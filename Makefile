# Bill Pay Sync — every command a developer or CI needs. `make run` and `make test` bootstrap themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
# Lambda runs python3.13: use it for the virtualenv where pyenv has it, else the machine's python3.
BASE_PY   := $(shell if PYENV_VERSION=3.13.0 python3.13 -c pass 2>/dev/null; then echo "env PYENV_VERSION=3.13.0 python3.13"; else echo python3; fi)
STAMP     := $(VENV)/.installed

# The deploy toolchain lives apart: aws-sam-cli pins its own boto3/pydantic (requirements-sam.txt).
SAM_VENV  := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed
SAM       := $(SAM_VENV)/bin/sam
# No Docker, no telemetry; the venv's python (with pip) first on PATH for the layer's Makefile.
SAM_ENV   := env SAM_CLI_TELEMETRY=0 PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH"
ENV       ?= default
# The suite mostly waits on its stacks' timings (a third of two cores busy when run serially): two workers
# overlap those waits. Each takes whole test files (a module's stack is started once), longest first.
TEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder,)

.PHONY: help venv run events test lint typecheck unit integration bench drill openapi build validate deploy resolve callers clean sam-venv

help:
	@echo "make run    — start the whole system locally (API :3000, Codat sandbox :4100, AWS emulator :4566)"
	@echo "make events — tail the local stack's events (one JSON line per end of a write; beside make run)"
	@echo "make test   — lint, typecheck and the full test suite [TEST_WORKERS=2: parallel pytest workers; 1 = serial]"
	@echo "make unit | integration — the unit tier alone (no servers) | the tests against local servers"
	@echo "make bench [SECTIONS=\"ledger drain\"] — benchmarks (all, or those sections); writes bench/results.json and bench/RESULTS.md"
	@echo "make drill [N=200] [AWS_FAULTS=0.1] — exactly-once drill under random Codat (and AWS) faults; writes bench/drill.json"
	@echo "make openapi — regenerate docs/openapi.json from the handlers"
	@echo "make callers [PARAM=...] [CMD=...] — print or edit the client registry (who may call, what for)"
	@echo "make build | validate | deploy — SAM build (python3.13/arm64, no Docker), lint the template, deploy"

$(STAMP): requirements-dev.txt layers/billpay/requirements.txt
	@test -x $(PY) || $(BASE_PY) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m local.stack

# Every event the running `make run` stack publishes, one JSON line each (local/events_tail.py).
events: $(STAMP)
	$(PY) -m local.events_tail

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy layers/billpay functions local ops tests bench

test: $(STAMP) lint typecheck
	$(PY) -m pytest -q $(PYTEST_PARALLEL)

# The unit tier alone: no server, no network (tests/unit/conftest.py refuses connections).
unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

# Everything that talks to real local servers: the Codat sandbox, the AWS emulator, the whole stack.
integration: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_PARALLEL) tests/sandbox tests/integration tests/contract

bench: $(STAMP)
	PYTHONPATH=layers/billpay $(PY) -m bench $(SECTIONS)

# N payments (default 200), each sent 1-3 times, under random sandbox faults; fails on a duplicate or loss.
# AWS_FAULTS=0.1 also faults each DynamoDB/SQS request of the functions with that probability.
N ?= 200
AWS_FAULTS ?= 0
drill: $(STAMP)
	$(PY) -m local.drill --payments $(N) --aws-faults $(AWS_FAULTS)

# docs/openapi.json from each API function's resolver (tests/contract/test_openapi_drift.py checks it).
openapi: $(STAMP)
	$(PY) -m local.openapi

# A person's decision on a needs_review payment (docs/runbook.md). Local stack by default; a deployed
# stack's table with TABLE=<OperationsTableName> and the usual AWS credentials/region in the environment.
# make resolve OP=<operationId> STATUS=succeeded|failed NOTE="what was checked" [TABLE=... BUS=<event bus>]
# Who decided is recorded from the caller's AWS identity (STS), not typed in.
resolve: $(STAMP)
	@test -n "$(OP)" -a -n "$(STATUS)" -a -n "$(NOTE)" || \
		{ echo 'usage: make resolve OP=<operationId> STATUS=succeeded|failed NOTE="what was checked" [TABLE=<table>]' >&2; exit 2; }
	PYTHONPATH=layers/billpay $(PY) -m ops.resolve --operation-id "$(OP)" --status "$(STATUS)" \
		--note "$(NOTE)" --table "$(TABLE)" --bus "$(BUS)"

# The client registry (docs/threat-model.md): print it, or edit it with CMD="add|retire|grant|companies|put
# ...". Local stack by default; a deployed stack's parameter with PARAM=/<stack>/callers (its
# CallersParameterName output) and the usual AWS credentials/region in the environment.
# make callers [PARAM=/<stack>/callers] [CMD="add --client app --principal arn:aws:iam::<acct>:role/<name>"]
callers: $(STAMP)
	PYTHONPATH=layers/billpay $(PY) -m local.callers $(if $(PARAM),--parameter "$(PARAM)") $(CMD)

$(SAM_STAMP): requirements-sam.txt
	@test -x $(SAM_VENV)/bin/python || python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q --upgrade pip
	$(SAM_VENV)/bin/python -m pip install -q -r requirements-sam.txt
	@touch $(SAM_STAMP)

sam-venv: $(SAM_STAMP)

# python3.13/arm64 artifacts in .aws-sam/build, no Docker (functions/Makefile, layers/billpay/Makefile).
build: $(SAM_STAMP)
	$(SAM_ENV) $(SAM) build

validate: $(SAM_STAMP)
	$(SAM_ENV) $(SAM) validate --lint
	$(SAM_VENV)/bin/cfn-lint template.yaml

# make deploy [ENV=default|dev|prod] [CODAT_SECRET_ARN=arn:...] [ALARM_TOPIC_ARN=arn:...] [PARAMS="K=V ..."]
# Parameters given here are added to the environment's parameter_overrides in samconfig.toml; any
# parameter left out keeps its previous value on an existing stack (sam deploy's UsePreviousValue).
DEPLOY_OVERRIDES = $(strip $(shell $(SAM_VENV)/bin/python -c 'import sys, tomllib; c = tomllib.load(open("samconfig.toml", "rb")); print(c.get(sys.argv[1], {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", ""))' $(ENV)) \
	$(if $(CODAT_SECRET_ARN),CodatApiKeySecretArn=$(CODAT_SECRET_ARN)) \
	$(if $(ALARM_TOPIC_ARN),AlarmTopicArn=$(ALARM_TOPIC_ARN)) $(PARAMS))

deploy: build
	@case " $(DEPLOY_OVERRIDES) " in *" AlarmTopicArn="?*) ;; *) \
		echo "WARNING: no AlarmTopicArn given (ALARM_TOPIC_ARN=arn:aws:sns:...): alarms, including" \
			"needs_review payments, will notify nobody (an existing stack keeps its previous topic)." >&2 ;; esac
	$(SAM_ENV) $(SAM) deploy --config-env $(ENV) $(if $(DEPLOY_OVERRIDES),--parameter-overrides $(DEPLOY_OVERRIDES))

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
