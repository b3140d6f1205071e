# radcds — every target installs what it needs first (see `make help`).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.8
CACHE := .cache
UV := $(CACHE)/uv/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(CACHE)/stamps
# Every deploy/local/<peer>/pom.xml is a Maven peer whose runtime jars go to .cache/<peer>/lib, and every
# deploy/local/<peer>/package.json an npm peer installed into .cache/<peer> (a new peer needs no Makefile change).
MAVEN_PEERS := $(patsubst deploy/local/%/pom.xml,%,$(wildcard deploy/local/*/pom.xml))
NPM_PEERS := $(patsubst deploy/local/%/package.json,%,$(wildcard deploy/local/*/package.json))
PYTEST_ARGS ?=
# A real helm binary for `helm lint --strict` and `helm template` in tests/helm, built from the Go module proxy.
GO ?= /usr/local/go/bin/go
HELM_VERSION := v3.22.0
HELM := $(CACHE)/helm/bin/helm
# Toxiproxy (its server binary) for the fault suite's cut and slowed connections in tests/faults, built the same way.
TOXIPROXY_VERSION := v2.5.0
CHART := deploy/helm/radcds
CHART_TOOLS := $(CACHE)/charttools/node_modules

.PHONY: help deps python-deps peer-deps system-deps run up down status demo test test-unit test-integration test-faults fuzz lint format bench proto schemas lock clean images images-test images-requirements chart-docs

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-17s\033[0m %s\n", $$1, $$2}'

# ---- installation ---------------------------------------------------------------------
$(UV):
	@mkdir -p $(CACHE)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(CACHE)/uv uv==$(UV_VERSION)

$(STAMP)/venv: requirements.lock $(wildcard libs/*/pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml) | $(UV)
	@mkdir -p $(STAMP)
	@test -x $(PY) || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	VIRTUAL_ENV=$(VENV) $(UV) pip sync --quiet requirements.lock
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --no-deps -e libs/radcds -e services/imaging -e services/inference -e services/reporting -e services/referral -e services/fusion -e services/worklist -e tools/devstack
	@touch $@

$(STAMP)/mvn-%: deploy/local/%/pom.xml
	@mkdir -p $(STAMP) $(CACHE)/$*/lib
	mvn -q -B -f $< dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(abspath $(CACHE)/$*/lib)
	@touch $@

$(STAMP)/npm-%: deploy/local/%/package.json deploy/local/%/package-lock.json
	@mkdir -p $(STAMP) $(CACHE)/$*
	cp deploy/local/$*/package.json deploy/local/$*/package-lock.json $(CACHE)/$*/
	npm ci --ignore-scripts --no-audit --no-fund --prefix $(CACHE)/$* >/dev/null
	@touch $@

$(STAMP)/helm-$(HELM_VERSION):
	@mkdir -p $(STAMP) $(CACHE)/helm/bin
	GOBIN=$(abspath $(CACHE)/helm/bin) GOFLAGS=-mod=mod $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	@touch $@

$(STAMP)/toxiproxy-$(TOXIPROXY_VERSION):
	@mkdir -p $(STAMP) $(CACHE)/toxiproxy/bin
	GOBIN=$(abspath $(CACHE)/toxiproxy/bin) GOFLAGS=-mod=mod $(GO) install github.com/Shopify/toxiproxy/v2/cmd/server@$(TOXIPROXY_VERSION)
	@touch $@

system-deps: ## Debian packages the stack needs (Java, Maven, PostgreSQL); installs only what is missing
	@bash deploy/local/system-deps.sh

python-deps: $(STAMP)/venv ## The Python environment only (uv, requirements.lock): all that lint and unit tests need

peer-deps: system-deps $(MAVEN_PEERS:%=$(STAMP)/mvn-%) $(NPM_PEERS:%=$(STAMP)/npm-%) $(STAMP)/helm-$(HELM_VERSION) $(STAMP)/toxiproxy-$(TOXIPROXY_VERSION) ## Debian packages, Maven peers' jars (Kafka, S3Proxy, HAPI validators), npm peers, helm, toxiproxy

deps: python-deps peer-deps ## Install everything: the Python environment and every peer

lock: | $(UV) ## Re-resolve the workspace and rewrite requirements.lock (the one lock file)
	$(UV) lock --python $(PYTHON)
	$(UV) export --frozen --no-emit-workspace --all-groups --no-header -q -o requirements.lock
	$(MAKE) --no-print-directory images-requirements

# ---- the local stack ------------------------------------------------------------------
run: deps ## Start the stack, replay the demo (chest CR over STOW-RS -> DiagnosticReport), serve until Ctrl-C
	$(PY) -m radcds_devstack run

up: deps ## Start the stack in the background and wait until every component is ready
	$(PY) -m radcds_devstack up

down: ## Stop the stack: no process and no port left behind
	@if [ -x $(PY) ]; then $(PY) -m radcds_devstack down; else echo "nothing to stop"; fi

status: ## Show which components of the stack run
	@$(PY) -m radcds_devstack status

demo: ## Replay the demo against a running stack (make up first)
	$(PY) -m radcds_devstack demo

# ---- container images -----------------------------------------------------------------
images: python-deps system-deps ## Build every image with buildah (Debian bases by mmdebstrap); OCI archives in dist/images
	$(PY) -m radcds_devstack.images build

images-test: deps ## Start each image to /healthz and /readyz on the local infrastructure (migrate first), print sizes
	$(PY) -m radcds_devstack.images test

images-requirements: python-deps ## Rewrite deploy/images/requirements/*.txt (each image's subset of requirements.lock)
	$(PY) -m radcds_devstack.images requirements

# ---- quality --------------------------------------------------------------------------
test: deps ## Unit tests, then integration tests against real Kafka, Triton and PostgreSQL (not the fault suite)
	$(PY) -m pytest --ignore=tests/faults $(PYTEST_ARGS)

test-unit: python-deps ## Unit tests only (no external components, nothing but the Python environment)
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

test-integration: deps ## Integration tests only (not the fault suite)
	$(PY) -m pytest -m integration --ignore=tests/faults $(PYTEST_ARGS)

test-faults: deps ## The fault suite: kills and outages on its own stack, counting lost and duplicated reports and ORUs
	$(PY) -m pytest tests/faults -m faults $(PYTEST_ARGS)

fuzz: python-deps ## The property and fuzz tests with the long hypothesis profile (20,000 examples each; make test runs 150)
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -m "properties and not integration" --hypothesis-show-statistics $(PYTEST_ARGS)

lint: python-deps ## ruff, mypy and the import-layer contract, as CI runs them
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy libs/radcds/src services/imaging/src services/inference/src services/reporting/src services/referral/src services/fusion/src services/worklist/src tools/devstack/src
	$(VENV)/bin/lint-imports

format: python-deps ## Apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: deps ## Benchmarks in bench/ (tables with ratios against a baseline measured in the same run)
	$(PY) bench/run.py

chart-docs: python-deps $(STAMP)/npm-charttools ## Regenerate the chart's README.md and values.schema.json from the `## @param` comments of values.yaml
	$(PY) deploy/helm/chart_docs.py --chart $(CHART) --generator $(CHART_TOOLS)/@bitnami/readme-generator-for-helm/bin/index.js

proto: python-deps ## Generate Python code from proto/ (one source for every service)
	$(PY) -m grpc_tools.protoc -Iradcds_inference/adapters/grpc/gen=proto/radcds/v1 \
		--python_out=services/inference/src --grpc_python_out=services/inference/src \
		--pyi_out=services/inference/src \
		$$(find proto -name '*.proto' | sort)

schemas: python-deps ## Generate the events' JSON Schemas (libs/radcds/src/radcds/schemas) from their payload declarations
	$(PY) -m radcds_devstack.schemas

clean: down ## Remove the run folder (logs, data) — keeps the caches
	@if [ -L .run/postgres ]; then rm -rf "$$(readlink .run/postgres)"; fi
	rm -rf .run
