# helmdeck-operator: every developer and CI entry point. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
BIN     := $(VENV)/bin
CLUSTER := .local/cluster
PYTEST_ARGS ?=

.PHONY: help
help: ## list targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml devkit/pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' -e devkit
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## create the virtualenv: the operator, its dev kit (helmdeck-dev), test tools

# The lock tool, pinned so the same pyproject.toml always gives the same lock file; it lives
# in the venv only (never a runtime dependency).
UV_REQUIREMENT := uv==0.13.9

.PHONY: lock
lock: venv ## regenerate requirements.lock: the image's runtime dependencies, pinned and hashed
	$(BIN)/pip install --quiet '$(UV_REQUIREMENT)'
	UV_CUSTOM_COMPILE_COMMAND='make lock' $(BIN)/uv pip compile --quiet pyproject.toml \
	  --universal --python-version 3.11 --generate-hashes --annotation-style split \
	  --output-file requirements.lock

.PHONY: controlplane
controlplane: ## build (or reuse) kube-apiserver, etcd, kube-controller-manager, kubectl
	@bash hack/build-controlplane.sh

.PHONY: cluster
cluster: venv ## start the local control plane in the background (.local/cluster/kubeconfig)
	@$(BIN)/helmdeck-dev cluster up --state-dir $(CLUSTER)

.PHONY: cluster-down
cluster-down: venv ## stop the local control plane
	@$(BIN)/helmdeck-dev cluster down --state-dir $(CLUSTER)

.PHONY: lint
lint: venv ## formatter, linter, strict types, import layers
	$(BIN)/ruff format --check operator devkit tests benchmarks e2e
	$(BIN)/ruff check operator devkit tests benchmarks e2e
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: tools
tools: ## build (or reuse) helm and actionlint from Go modules
	@bash hack/build-tools.sh

.PHONY: test-unit
test-unit: venv ## pure tests only (no control plane, no helm)
	$(BIN)/pytest -m "not cluster" --ignore=tests/chart $(PYTEST_ARGS)

.PHONY: test
test: venv lint ## the whole suite: lint, unit, emulator, chart, integration against the real apiserver
	@bash hack/build-controlplane.sh >/dev/null
	@bash hack/build-tools.sh >/dev/null
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: test-chart
test-chart: venv ## Helm chart: lint, schema, render, RBAC, server dry-run on the local apiserver
	@bash hack/build-tools.sh >/dev/null
	@bash hack/build-controlplane.sh >/dev/null
	$(BIN)/pytest tests/chart $(PYTEST_ARGS)

.PHONY: e2e
e2e: venv ## e2e suite on the local control plane, operator running as the chart's ServiceAccount
	@bash hack/build-controlplane.sh >/dev/null
	@bash hack/build-tools.sh >/dev/null
	$(PY) e2e/run_local.py $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

.PHONY: chart-sync
chart-sync: ## copy crds/ and policies/ into the chart (a test fails when they drift)
	cp crds/*.yaml charts/helmdeck-operator/crds/
	cp policies/*.yaml charts/helmdeck-operator/files/policies/

.PHONY: demo
demo: venv ## run the product end to end on this machine, narrate it, tear it down
	@$(BIN)/helmdeck-dev demo --workdir .local/demo

.PHONY: dev
dev: venv ## leave control plane, emulator and operator running (make dev-down stops them)
	@$(BIN)/helmdeck-dev dev up --state-dir .local/dev

.PHONY: dev-down
dev-down: venv ## stop what make dev started
	@$(BIN)/helmdeck-dev dev down --state-dir .local/dev

.PHONY: bench
bench: venv ## benchmarks: gateway client round trips; operator at N=1000 and N=5000 beside the apiserver floor; warm-pool claims
	$(PY) benchmarks/gateway_client.py --calls 1000
	$(PY) benchmarks/operator_scale.py --sessions 1000 --sessions 5000 --outage 60 --json .local/bench/operator_scale.json
	$(MAKE) --no-print-directory bench-pools

.PHONY: bench-pools
bench-pools: venv ## benchmark: 1,000 claims from warm pools beside the same as cold creates (2 s boot)
	$(PY) benchmarks/pool_claims.py --sessions 1000 --rate 20 --json .local/bench/pool_claims.json

.PHONY: clean
clean: cluster-down ## remove local state (the control-plane binary cache is kept)
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache .hypothesis
