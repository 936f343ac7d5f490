# visionq — `make up` runs everything on this machine, `make test` runs the test suite.
# Both install what is missing first (uv from PyPI, then the locked dependencies).

PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

PRODUCT_DIRS := api tasks workers autoscale monitoring visionq launcher
SYSTEM_TOOLS := chromium prometheus docker-compose
# Debian packages whose binaries are not on PATH: package=glob of a file it installs.
SYSTEM_PACKAGES := postgresql=/usr/lib/postgresql/*/bin/initdb mosquitto=/usr/sbin/mosquitto

.PHONY: help install system-deps up test test-slow lint docs bench audit client-dist clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(STAMP): pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --all-extras --locked
	$(BIN)/visionq install-models
	@touch $@

install: $(STAMP) ## Install the locked dependencies into .venv (all extras, dev tools)

system-deps: ## Debian packages the tests drive (chromium, prometheus, docker-compose, postgresql, mosquitto), when missing
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	for pair in $(SYSTEM_PACKAGES); do pkg=$${pair%%=*}; set -- $${pair#*=}; [ -e "$$1" ] || missing="$$missing $$pkg"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian packages:$$missing"; \
	  created=""; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; status=$$?; \
	  [ -n "$$created" ] && rm -f /usr/sbin/policy-rc.d; exit $$status; \
	else echo "missing:$$missing (not root: the tests that need them will skip)"; fi

up: install ## Start Redis, the API, a worker per queue and Flower; Ctrl-C stops them
	C_FORCE_ROOT=1 $(BIN)/visionq up

test: install system-deps ## Run the test suite (real Redis, workers, models, Prometheus, Chromium)
	C_FORCE_ROOT=1 $(BIN)/pytest -m "not slow"

test-slow: install system-deps ## Run the slow soak-style tests too
	C_FORCE_ROOT=1 $(BIN)/pytest

bench: install system-deps ## Benchmarks, not part of make test: results in bench/results/
	C_FORCE_ROOT=1 $(BIN)/python -m bench loadgen --task classify
	C_FORCE_ROOT=1 $(BIN)/python -m bench submit
	C_FORCE_ROOT=1 $(BIN)/python -m bench face4k
	C_FORCE_ROOT=1 $(BIN)/python -m bench faces
	$(BIN)/python -m bench classify-eval
	C_FORCE_ROOT=1 $(BIN)/python -m bench detect-eval
	C_FORCE_ROOT=1 $(BIN)/python -m bench face-openset
	C_FORCE_ROOT=1 $(BIN)/python -m bench callbacks
	C_FORCE_ROOT=1 $(BIN)/python -m bench camera --background face4k --workers 4
	C_FORCE_ROOT=1 $(BIN)/python -m bench broker-ceiling
	$(BIN)/python bench/autoscale_sim.py

audit: install ## bandit's checks (ruff S) over the product folders, then pip-audit over uv.lock (needs the PyPI JSON API / OSV)
	$(BIN)/ruff check --select S $(PRODUCT_DIRS)
	$(UV) pip install --python $(BIN)/python --quiet pip-audit
	$(BIN)/python -m bench.audit

client-dist: install ## Build visionq-client's wheel and sdist into clients/python/dist and twine-check them (make test does too)
	$(BIN)/python -m build --sdist --wheel --outdir clients/python/dist clients/python
	$(BIN)/twine check --strict clients/python/dist/*

docs: install ## Serve the docs site (docs/, mkdocs.yml) at http://127.0.0.1:8001 with live reload; make test builds it --strict
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

lint: install ## ruff
	$(BIN)/ruff check .

clean: ## Remove the venv and state (keeps nothing)
	rm -rf $(VENV) .visionq .pytest_cache
