# visionq — `make up` runs everything on this machine, `make test` runs the test suite.
# Both install what is missing first (uv from PyPI, then the locked dependencies).

PYTHON ?= python3
UV := $(PYTHON) -m uv
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install up test test-slow lint bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(STAMP): pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --all-extras --locked
	@touch $@

install: $(STAMP) ## Install the locked dependencies into .venv (all extras, dev tools)

up: install ## Start Redis, the API, a worker per queue and Flower; Ctrl-C stops them
	C_FORCE_ROOT=1 $(BIN)/visionq up

test: install ## Run the test suite (real Redis, workers, models)
	C_FORCE_ROOT=1 $(BIN)/pytest -m "not slow"

test-slow: install ## Run the slow soak-style tests too
	C_FORCE_ROOT=1 $(BIN)/pytest

lint: install ## ruff
	$(BIN)/ruff check .

clean: ## Remove the venv and state (keeps nothing)
	rm -rf $(VENV) .visionq .pytest_cache
