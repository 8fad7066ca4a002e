# Substratus for Python: set-up, demo and tests.
#   make setup   install what the project needs (engine, .venv, base images); quick when done
#   make demo    the main job: dataset -> model -> fine-tune -> serve -> notebook
#   make test    unit, integration (real podman/docker), reliability, engines, end-to-end, Kubernetes and browser tiers
#   make wheel   dist/substratus_py-*.whl (and the sdist): `pipx install` it, then `sub`
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

.PHONY: setup engine venv venv-ml base-images operator-image demo test test-unit test-ml test-integration test-reliability \
	test-e2e test-kubernetes test-kubernetes-real test-browser test-heavy bench bench-gpu bench-controlplane demo-gemma \
	lint lint-ml clean-demo wheel rootless-user test-engines test-docker test-rootless test-wheel

setup: engine venv base-images

engine:
	@bash scripts/setup-engine.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) with the substratus package and its test tools" >&2
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[test,test-kubernetes]'
	@touch $@

venv-ml: $(ML_STAMP)

$(ML_STAMP): images/ml/pyproject.toml
	@echo "==> creating $(VENV_ML) for the ML package's own tests" >&2
	@test -x $(VENV_ML)/bin/python || $(PYTHON) -m venv $(VENV_ML)
	@$(VENV_ML)/bin/pip install -q --disable-pip-version-check $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) torch==2.13.0
	@$(VENV_ML)/bin/pip install -q --disable-pip-version-check -e 'images/ml[test]'
	@touch $@

# One implementation: `sub images build` (scripts/build-base-images.sh calls it too).
base-images: engine venv
	@$(BIN)/sub images build

# The Kubernetes operator image, FROM python-base (images/operator/build.sh; quick when unchanged).
operator-image: base-images
	@bash images/operator/build.sh >/dev/null

demo: setup
	@$(BIN)/python scripts/demo.py

# The real model: Gemma 3 270M fine-tuned with LoRA on the Shakespeare dataset
# (downloads 253 MB of weights; about 15 minutes on 2 cores).
demo-gemma: setup
	@$(BIN)/python scripts/demo.py --example gemma

test: setup test-unit test-ml test-integration test-reliability test-engines test-e2e test-kubernetes test-browser

test-unit: venv
	$(BIN)/pytest -q tests/unit -p no:cacheprovider
	$(BIN)/lint-imports
	$(BIN)/mypy --strict src/substratus

test-ml: venv-ml
	cd images/ml && ../../$(VENV_ML)/bin/python -m pytest -q -p no:cacheprovider

# mypy --strict on the ML package (its settings are in images/ml/pyproject.toml).
lint-ml: venv-ml
	cd images/ml && ../../$(VENV_ML)/bin/mypy substratus_ml

test-integration: venv engine
	$(BIN)/pytest -q -m integration tests/integration -p no:cacheprovider

# Bad inputs, kill -9 trials, concurrent applies, schemathesis; prints the four figures
# the README's "Guarantees" section quotes.
test-reliability: venv engine
	$(BIN)/pytest -q -m reliability tests/reliability -p no:cacheprovider
# Where users are (tests/engines): the docker runtime against podman's Docker API, rootless
# podman as a user made by scripts/setup-rootless-user.sh, and the wheel installed with pipx.
# One pytest run, so the wheel is built once.
ENGINES_PYTEST = $(BIN)/pytest -q -m engines -p no:cacheprovider --durations=10

test-engines: venv engine rootless-user
	$(ENGINES_PYTEST) tests/engines

test-docker: venv engine
	$(ENGINES_PYTEST) tests/engines/test_docker.py

test-rootless: venv engine rootless-user
	$(ENGINES_PYTEST) tests/engines/test_rootless.py

test-wheel: venv engine
	$(ENGINES_PYTEST) tests/engines/test_wheel.py

# Needs root (creates a user); without root the rootless tier says so and skips (fails in CI).
rootless-user:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/setup-rootless-user.sh; \
	 else echo "rootless-user: not root, so no test user is made; the rootless tier will skip" >&2; fi

wheel: venv
	$(BIN)/python -m build --outdir dist .

test-e2e: setup
	$(BIN)/pytest -q -m e2e tests/e2e -p no:cacheprovider

# The dashboard in Debian's chromium (installed here when missing), driven by Playwright.
test-browser: venv engine
	@bash scripts/setup-browser.sh
	$(BIN)/pytest -q -m browser tests/browser -p no:cacheprovider

# CRDs, generators, strict schema validation (several Kubernetes versions), the artifact
# store against moto's S3 server, the runtime and operator on the emulated API server,
# and the generated pods under `podman kube play`.
test-kubernetes: venv engine operator-image
	$(BIN)/pytest -q -m "kubernetes and not kubereal" tests/kubernetes -p no:cacheprovider

# Opt-in: a real cluster (kind, k3s, GKE...) named by SUBSTRATUS_KUBECONFIG.
test-kubernetes-real: venv
	@if [ -z "$${SUBSTRATUS_KUBECONFIG:-}" ]; then \
	  echo "test-kubernetes-real: NOT RUN: SUBSTRATUS_KUBECONFIG is not set (point it at a kubeconfig of a real cluster)" >&2; \
	else \
	  $(BIN)/pytest -q -m kubereal tests/kubernetes -p no:cacheprovider -rs; \
	fi

test-heavy: setup
	SUBSTRATUS_HEAVY=1 $(BIN)/pytest -q -m heavy tests -p no:cacheprovider

# CPU goals of the serving engine (continuous batching vs one at a time, Poisson arrivals),
# then many LoRA adapters on one server (mixed-adapter batches vs the base alone, load times).
bench: venv-ml
	OMP_WAIT_POLICY=PASSIVE $(VENV_ML)/bin/python bench/serve_bench.py
	OMP_WAIT_POLICY=PASSIVE $(VENV_ML)/bin/python bench/lora_bench.py

# The engine against transformers' generate on a GPT-2-small-shaped model, and mixed LoRA
# adapters against the base (needs CUDA; BENCH_GPU_ARGS="--device cpu --model tiny" runs it on the CPU).
BENCH_GPU_ARGS ?=
bench-gpu: venv-ml
	OMP_WAIT_POLICY=PASSIVE $(VENV_ML)/bin/python bench/gpu_bench.py $(BENCH_GPU_ARGS)

# The package byte-compiled first, as an installed one is (`pip install` compiles; an editable
# install does not, and with PYTHONDONTWRITEBYTECODE set Python never caches what it compiles).
bench-controlplane: setup
	$(BIN)/python -m compileall -q src
	$(BIN)/python bench/controlplane_bench.py

lint: venv
	$(BIN)/lint-imports
	$(BIN)/mypy --strict src/substratus

clean-demo:
	-$(BIN)/sub delete -f examples/demo
