# The README's two commands: `make up` sets up and runs the product, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
# buf (protos lint and breaking-change check) from npm, run with npx; tests/test_contract.py reads this pin.
BUF_VERSION := 1.75.0
PROTOS := $(shell cd protos && find . -name '*.proto' | sed 's|^\./||' | sort)
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: up venv test lint fuzz fuzz-auth protos release-contract provision dashboard clean-var certs

## Create the virtual environment and install everything (torch first, pinned to the CPU build).
venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -r requirements.txt torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('$(TORCH_VERSION)') else 'torch ' + v + ' installed, expected $(TORCH_VERSION)')"
	touch $@

## Provision what the embedded default needs (base model, sample debates) once; then run the three services.
up: venv provision
	$(PY) -m services.launcher

provision: venv
	$(PY) -m services.trainer provision

## A development CA and a certificate per service in var/certs/ (TLS and mutual TLS; docker-compose.yml uses
## them). Kept when still valid, so it is safe to run again.
certs: venv
	$(PY) scripts/dev_certs.py --out var/certs

## Lint (ruff, configured in pyproject.toml), then run the whole test suite.
test: venv lint
	$(PY) -m pytest -q

lint: venv
	$(PY) -m ruff check .

## A longer hostile-input run: schemathesis over every REST operation and hypothesis over every RPC.
fuzz: venv
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(PY) -m pytest -q tests/faults/test_fuzz_api.py tests/faults/test_fuzz_grpc.py

## The same fuzz run with users and roles on: every request carries a key of the role FUZZ_AUTH (default user).
fuzz-auth: venv
	FUZZ_AUTH=$${FUZZ_AUTH:-user} FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-50} $(PY) -m pytest -q tests/faults/test_fuzz_api.py tests/faults/test_fuzz_grpc.py

## Rebuild the dashboard bundle from web/ (needs Node.js >= 20.19 and npm); commit web/ and the bundle together.
dashboard:
	scripts/build_dashboard.sh

## Regenerate generated/ from protos/ with the pinned grpcio-tools.
protos: venv
	cd protos && ../$(PY) -m grpc_tools.protoc -I . --python_out=../generated --grpc_python_out=../generated --pyi_out=../generated $(PROTOS)

## At a release: record protos/ as the released contract that `buf breaking` (in the tests) compares against.
release-contract:
	npx --yes @bufbuild/buf@$(BUF_VERSION) build --exclude-source-info -o protos/released.binpb

clean-var:
	rm -rf var
