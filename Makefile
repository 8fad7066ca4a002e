# Substratus for Python: set-up, demo and tests.
#   make setup   install what the project needs (engine, .venv, base images); quick when done
#   make demo    the main job: dataset -> model -> fine-tune -> serve -> notebook
#   make test    unit, integration (real podman/docker), reliability, end-to-end and browser tiers
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The reference images' ML package is tested on the host too, in its own venv.
# torch==2.13.0 is the CPU wheel on machines of this kind (pip's find-links);
# elsewhere set TORCH_INDEX=https://download.pytorch.org/whl/cpu.
VENV_ML := .venv-ml
ML_STAMP := $(VENV_ML)/.installed-stamp
TORCH_INDEX ?=

.PHONY: setup engine venv venv-ml base-images demo test test-unit test-ml test-integration test-reliability test-e2e test-browser test-heavy bench bench-controlplane lint clean-demo

setup: engine venv base-images

engine:
	@bash scripts/setup-engine.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) with the substratus package and its test tools" >&2
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

venv-ml: $(ML_STAMP)

$(ML_STAMP): images/ml/pyproject.toml
	@echo "==> creating $(VENV_ML) for the ML package's own tests" >&2
	@test -x $(VENV_ML)/bin/python || $(PYTHON) -m venv $(VENV_ML)
	@$(VENV_ML)/bin/pip install -q --disable-pip-version-check $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch==2.13.0
	@$(VENV_ML)/bin/pip install -q --disable-pip-version-check -e 'images/ml[test]'
	@touch $@

base-images: engine
	@bash scripts/build-base-images.sh

demo: setup
	@$(BIN)/python scripts/demo.py

test: setup test-unit test-ml test-integration test-reliability test-e2e test-browser

test-unit: venv
	$(BIN)/pytest -q tests/unit -p no:cacheprovider
	$(BIN)/lint-imports
	$(BIN)/mypy --strict src/substratus

test-ml: venv-ml
	cd images/ml && ../../$(VENV_ML)/bin/python -m pytest -q -p no:cacheprovider

test-integration: venv engine
	$(BIN)/pytest -q -m integration tests/integration -p no:cacheprovider

# Bad inputs, kill -9 trials, concurrent applies, schemathesis; prints the four figures
# the README's "Guarantees" section quotes.
test-reliability: venv engine
	$(BIN)/pytest -q -m reliability tests/reliability -p no:cacheprovider

test-e2e: setup
	$(BIN)/pytest -q -m e2e tests/e2e -p no:cacheprovider

# The dashboard in Debian's chromium (installed here when missing), driven by Playwright.
test-browser: venv engine
	@bash scripts/setup-browser.sh
	$(BIN)/pytest -q -m browser tests/browser -p no:cacheprovider

test-heavy: setup
	SUBSTRATUS_HEAVY=1 $(BIN)/pytest -q -m heavy tests -p no:cacheprovider

bench: setup
	$(BIN)/python bench/serve_bench.py

bench-controlplane: setup
	$(BIN)/python bench/controlplane_bench.py

lint: venv
	$(BIN)/lint-imports
	$(BIN)/mypy --strict src/substratus

clean-demo:
	-$(BIN)/sub delete -f examples/demo
