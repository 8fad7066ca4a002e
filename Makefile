# Substratus for Python: set-up, demo and tests.
#   make setup   install what the project needs (engine, .venv, base images); quick when done
#   make demo    the main job: dataset -> model -> fine-tune -> serve -> notebook
#   make test    unit, integration (real podman/docker) and end-to-end tiers
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup engine venv base-images demo test test-unit test-integration test-e2e test-heavy bench lint clean-demo

setup: engine venv base-images

engine:
	@bash scripts/setup-engine.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) with the substratus package and its test tools" >&2
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

base-images: engine
	@bash scripts/build-base-images.sh

demo: setup
	@$(BIN)/python scripts/demo.py

test: setup test-unit test-integration test-e2e

test-unit: venv
	$(BIN)/pytest -q tests/unit images/ml/tests -p no:cacheprovider

test-integration: venv engine
	$(BIN)/pytest -q -m integration tests/integration -p no:cacheprovider

test-e2e: setup
	$(BIN)/pytest -q -m e2e tests/e2e -p no:cacheprovider

test-heavy: setup
	SUBSTRATUS_HEAVY=1 $(BIN)/pytest -q -m heavy tests -p no:cacheprovider

bench: setup
	$(BIN)/python bench/serve_bench.py

lint: venv
	$(BIN)/lint-imports
	$(BIN)/mypy --strict src/substratus

clean-demo:
	-$(BIN)/sub delete -f examples/demo
