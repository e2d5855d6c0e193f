#!/usr/bin/env bash
# Issue 20 §5: on a machine with an NVIDIA GPU (the `device` tool's, or your own), measure
#   1. raw onnxruntime CUDA items/s per encoder at batch 1-256 (bench/gpu/raw.py), for the bench's stand-in
#      bundle and for a real bundle when MODEL_DIR names one (e.g. MODEL_DIR=models MODEL=tridigits);
#   2. cuDNN's convolution search, EXHAUSTIVE (onnxruntime's default) against HEURISTIC, on the image encoder;
#   3. the server's req/s and CPU per request on CUDA (python -m bench --quick) with one process, and
#      bench.scale with one process against N front-ends + one engine (FUSIONSERVE_WORKERS) at N = 1, 2, 4, 8;
# and write everything under bench/results/gpu/ with the commands that produced it.
# Needs: a Python with this project's serve + dev dependencies and onnxruntime-gpu instead of onnxruntime
# (PY=/path/to/python to choose it). About 5 minutes on an H200; QUICK=1 for a 1-minute smoke run.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/gpu}
SECONDS_PER_BATCH=${SECONDS_PER_BATCH:-1.0}
[ "${QUICK:-0}" = 1 ] && SECONDS_PER_BATCH=0.2
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
mkdir -p "$OUT"

"$PY" -c 'import onnxruntime as o, sys; p = o.get_available_providers(); print("onnxruntime", o.__version__, p)
sys.exit(0 if "CUDAExecutionProvider" in p else "bench/gpu/run.sh: onnxruntime has no CUDA EP here (install onnxruntime-gpu)")'
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$OUT/gpu.csv" || true
cpus=$(nproc); echo "cores: $cpus" >"$OUT/machine.txt"; uname -a >>"$OUT/machine.txt"

"$PY" -m bench.gpu.raw --providers cuda --min-seconds "$SECONDS_PER_BATCH" --out "$OUT/standin"
if [ -n "${MODEL_DIR:-}" ]; then
  "$PY" -m bench.gpu.raw --providers cuda --min-seconds "$SECONDS_PER_BATCH" --model-dir "$MODEL_DIR" \
    ${MODEL:+--model "$MODEL"} --out "$OUT/real"
  FUSIONSERVE_CUDA_CUDNN_CONV_ALGO_SEARCH=HEURISTIC "$PY" -m bench.gpu.raw --providers cuda \
    --min-seconds "$SECONDS_PER_BATCH" --model-dir "$MODEL_DIR" ${MODEL:+--model "$MODEL"} --out "$OUT/real-heuristic"
fi

"$PY" -m bench --quick --set providers=cuda --set preprocess_threads="$cpus" --out "$OUT/server-1-process"
FUSIONSERVE_PROVIDERS=cuda "$PY" -m bench.scale --quick --bundles standin --modes one-process,front-ends \
  --ns 1,2,4,8 --out "$OUT/scale"
echo "bench/gpu/run.sh: results in $OUT"
