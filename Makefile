# crmsync — one entry point for developers and CI. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON ?= python3.11
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# The whole suite runs in two pytest workers, a test file each at a time (module fixtures stay whole):
# most tests wait on processes and servers, so two share the two cores well. PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2
# The console's npm packages (package-lock.json), installed outside the tree git tracks.
NPM_DIR := .local/npm

.PHONY: help setup infra-up infra-down infra-status migrate topics test test-unit test-integration \
        test-e2e chromium lint manifests run stop emulator bench clean

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(UV):
	@echo "[setup] installing uv $(UV_VERSION)"
	@python3 -m pip install --quiet --user "uv==$(UV_VERSION)" 2>/dev/null \
	  || python3 -m pip install --quiet "uv==$(UV_VERSION)"

setup: $(UV) ## Install every package and the dev tools, pinned by uv.lock, into .venv
	@$(UV) sync --locked --all-packages --quiet
	@echo "[setup] .venv ready ($$($(BIN)/python --version))"
	@mkdir -p $(NPM_DIR) && cp package.json package-lock.json $(NPM_DIR)/
	@npm ci --prefix $(NPM_DIR) --no-audit --no-fund --silent
	@echo "[setup] console assets ready in $(NPM_DIR)/node_modules"

chromium: ## Install Debian's chromium for the console's browser tests, if it is missing
	@test -x /usr/bin/chromium || { echo "[setup] installing chromium"; \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo ) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

infra-up: setup ## Start local Kafka and PostgreSQL (idempotent) and create the topics
	@deploy/local/infra.sh up
	@$(BIN)/crmsync-topics

infra-down: ## Stop local Kafka and PostgreSQL
	@deploy/local/infra.sh down

infra-status: ## Say whether Kafka and PostgreSQL answer
	@deploy/local/infra.sh status

migrate: setup ## Bring the database to the newest schema
	@$(BIN)/crmsync-migrate

test: infra-up migrate chromium ## Everything CI runs: lint, manifests, unit, integration and e2e tests
	@$(MAKE) --no-print-directory lint
	@$(BIN)/pytest $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

test-unit: setup ## Fast tests of the pure logic (no servers)
	@$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: infra-up migrate ## Tests against the real Kafka, PostgreSQL and emulator
	@$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test-e2e: infra-up migrate chromium ## The services as separate processes
	@$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

lint: setup ## ruff and the import contracts (the domain stays pure)
	@$(BIN)/ruff check --quiet libs services tests bench
	@$(BIN)/lint-imports --no-cache >/dev/null && echo "[lint] import contracts kept"

manifests: setup ## Render every Kubernetes overlay and check it strictly, offline; lint the Dockerfiles and compose file
	@$(BIN)/pytest tests/unit/test_manifests.py tests/unit/test_manifests_images.py $(PYTEST_ARGS)

run: infra-up migrate ## Run the product: emulator, demo data, four services, a first sync (CRMSYNC_CRM=dynamics: Dynamics 365)
	@deploy/local/run.sh

stop: ## Stop everything `make run` started, Kafka and PostgreSQL included
	@deploy/local/run.sh stop || true
	@deploy/local/infra.sh down

emulator: setup ## Start the Salesforce emulator in the foreground, small demo dataset (CRMSYNC_CRM=dynamics: the Dataverse one)
	@if [ "$${CRMSYNC_CRM:-salesforce}" = dynamics ]; then \
	  exec $(BIN)/crmsync-dynamics-emulator --host 127.0.0.1 --port 8086 --leads 2000 --contacts 2000 --seed 7; \
	else \
	  exec $(BIN)/crmsync-emulator --host 127.0.0.1 --port 8085 --leads 2000 --contacts 2000 --seed 7; \
	fi

bench: infra-up migrate ## Run the benchmarks and print the figures (BENCH="crm pusher": only those; bench/RESULTS.md)
	@$(BIN)/python -m bench $(BENCH)

clean: ## Remove the virtualenv and local server state
	rm -rf $(VENV) .local
