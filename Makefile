# scalable-backend-operator: entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
UV_HOME := .local/uv
UV := $(UV_HOME)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
TOOLS_BIN := $(shell hack/install-tools.sh bin-dir)

export PATH := $(TOOLS_BIN):$(CURDIR)/$(VENV)/bin:$(PATH)
export KUBECONFIG ?= $(CURDIR)/.local/kubeconfig
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)

PYTEST := $(PY) -m pytest

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

## ---- set-up -----------------------------------------------------------------

$(UV):
	@echo "==> bootstrapping uv $(UV_VERSION) into $(UV_HOME)"
	@python3 -m venv $(UV_HOME)
	@$(UV_HOME)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The virtual environment is rebuilt whenever the lock file changes.
$(VENV)/.synced: uv.lock pyproject.toml sample-app/pyproject.toml | $(UV)
	@echo "==> syncing $(VENV) from uv.lock"
	@$(UV) sync --frozen --all-packages --quiet
	@touch $@

.PHONY: venv
venv: $(VENV)/.synced ## Create the virtual environment from the lock file

.PHONY: lock
lock: | $(UV) ## Re-resolve uv.lock after editing dependencies
	@$(UV) lock

.PHONY: tools
tools: ## Build/install etcd, Kubernetes, kwok, helm, the Debian servers and the real node's tools (cached)
	@hack/install-tools.sh all

# The real node's images, built here with no registry (cached: rebuilt only when an input changes);
# then the dangling images the rebuilds left in buildah's storage go (under vfs they fill the disk).
.PHONY: images
images: tools venv ## Build the operator, sample app, Postgres and Redis images for the real node (root; cached)
	@$(PY) hack/build_images.py
	@$(PY) hack/prune_image_storage.py

# Only the autoscaling benchmark and its KEDA test need KEDA: not part of "tools".
.PHONY: keda
keda: ## Build KEDA's operator and metrics server at the pinned version (cached; cold: minutes)
	@hack/install-tools.sh keda

## ---- local control plane ----------------------------------------------------

.PHONY: cluster-up
cluster-up: tools venv ## Start etcd, kube-apiserver, controller-manager, scheduler and kwok (3 nodes); SBO_REAL_NODE=1 adds a real node (root)
	@hack/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop exactly the control-plane processes cluster-up started
	@hack/cluster.sh down

.PHONY: cluster-status
cluster-status: ## Show what the local control plane is running
	@hack/cluster.sh status

## ---- quality ----------------------------------------------------------------

.PHONY: lint
lint: venv ## ruff and mypy --strict
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy

.PHONY: fmt
fmt: venv ## Format and autofix
	@$(PY) -m ruff format .
	@$(PY) -m ruff check --fix .

## ---- tests ------------------------------------------------------------------

.PHONY: test
test: tools keda venv images lint ## Set everything up, then run every test tier
	@$(PYTEST)

.PHONY: test-unit
test-unit: venv ## Unit tests only (no servers)
	@$(PYTEST) -m unit

.PHONY: test-integration
test-integration: tools keda venv ## Integration tests (real apiserver, Postgres, Redis, Prometheus)
	@$(PYTEST) -m integration

.PHONY: test-node
test-node: tools venv images ## Real-node tests: real pods on kubelet + containerd, and a clean host after down (root)
	@$(PYTEST) -m node

.PHONY: test-e2e
test-e2e: tools venv ## End-to-end tests on the local control plane
	@$(PYTEST) -m e2e

## ---- demo -------------------------------------------------------------------

.PHONY: demo
demo: tools venv images prometheus-sd ## The main job: the sample backend autoscaling on real pods (ARGS=--kwok: kwok only)
	@hack/demo.sh $(ARGS)

.PHONY: prometheus-sd
prometheus-sd: ## Prometheus with Kubernetes service discovery, for the demo (Debian's has none)
	@hack/install-tools.sh prometheus-sd

## ---- operator ---------------------------------------------------------------

.PHONY: crds
crds: venv chart-crds ## Regenerate crds/, the chart's CRD and docs/crd-reference.md from the models
	@$(PY) -m sbo_operator.api.crd --output crds --docs docs/crd-reference.md

.PHONY: run
run: venv ## Run the operator against $$KUBECONFIG in the foreground
	@$(VENV)/bin/sbo-operator run

.PHONY: up
up: tools venv ## Control plane + CRD + operator in the background + examples/basic.yaml, Ready
	@hack/operator.sh up

.PHONY: down
down: ## Stop the operator and the control plane that `make up` started
	@hack/operator.sh down

## ---- benchmarks (each prints one JSON line) ----------------------------------

.PHONY: bench-app
bench-app: tools venv ## Sample app under load: real Postgres primary+replica and Redis
	@$(PY) -m bench.app

.PHONY: bench-reconcile
bench-reconcile: tools venv ## N ScalableBackends to Ready vs a plain-client floor (N=100)
	@$(PY) -m bench.reconcile --n $(or $(N),100)

.PHONY: bench-backup
bench-backup: tools venv ## About 1 GiB to MinIO and back with barman-cloud, vs pg_dump/pg_restore
	@$(PY) -m bench.backup $(ARGS)

.PHONY: bench-autoscale
bench-autoscale: tools keda venv ## The operator, KEDA and the HPA on one load trace, measured
	@$(PY) -m bench.autoscale $(ARGS)

.PHONY: bench-failover
bench-failover: tools venv images ## PostgreSQL failover and switchover on the real node under a writer (run it under flock)
	@$(PY) -m bench.failover $(ARGS)

## ---- shipping: chart, RBAC, images ------------------------------------------

CHART := charts/scalable-backend-operator

.PHONY: rbac
rbac: venv ## Regenerate the chart's RBAC rules from operator/sbo_operator/rbac.py
	@$(PY) -m sbo_operator.rbac

.PHONY: chart-crds
chart-crds: venv ## Regenerate the chart's CRD from the same models as crds/
	@$(PY) -m sbo_operator.api.crd --output $(CHART)/crds

.PHONY: image-locks
image-locks: | $(UV) ## Export the images' hashed requirements (deploy/requirements/) from uv.lock
	@$(UV) export --frozen --no-dev --package scalable-backend-operator --format requirements-txt \
		--no-emit-workspace --no-header --quiet -o deploy/requirements/operator.txt
	@$(UV) export --frozen --no-dev --package sbo-sample-app --format requirements-txt \
		--no-emit-workspace --no-header --quiet -o deploy/requirements/sample-app.txt

.PHONY: helm-lint
helm-lint: tools ## helm lint --strict the chart, with every ci/*-values.yaml scenario
	@for values in $(CHART)/ci/*-values.yaml; do helm lint --strict $(CHART) -f $$values; done

.PHONY: test-shipping
test-shipping: tools venv ## Chart, RBAC, images, GitOps health, alerts, dashboard, workflows
	@$(PYTEST) tests/unit/shipping tests/integration/shipping
