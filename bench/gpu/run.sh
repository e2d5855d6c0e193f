#!/usr/bin/env bash
# Issue 20 §5: on a machine with an NVIDIA GPU (the `device` tool's, or your own), measure
#   1. raw onnxruntime CUDA items/s per encoder at batch 1-256 (bench/gpu/raw.py), for the bench's stand-in
#      bundle and for a real bundle when MODEL_DIR names one (e.g. MODEL_DIR=models MODEL=tridigits);
#   2. cuDNN's convolution search, EXHAUSTIVE (onnxruntime's default) against HEURISTIC, on the image encoder;
#   3. the server's req/s and CPU per request on CUDA (python -m bench --quick) with one process, and
#      bench.scale with one process against N front-ends + one engine (FUSIONSERVE_WORKERS) at N = 1, 2, 4, 8;
#   4. training on the device (training's own feature pass and a short train):
#      bench.features --device cuda (the pass against raw ORT CUDA, text/image/audio), `training train --device cuda`
#      for a few epochs (frozen, then --finetune-last 1 under bf16), and the same train under a 1-GPU torchrun;
# and write everything under bench/results/gpu/ with the commands that produced it. Each step is timed into
# $OUT/steps.log; a failing step of part 4 is logged and the others still run (the script then exits non-zero).
# Part 4 needs the tridigits data (DATA=..., default data/tridigits/dataset.jsonl: carry it, it is git-ignored).
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

step() {  # step NAME CMD...: run, time, log; remember a failure instead of stopping the remaining steps
  local name=$1 start=$SECONDS rc=0
  shift
  echo "== $name: $*" | tee -a "$OUT/steps.log"
  "$@" >"$OUT/$name.log" 2>&1 || rc=$?
  echo "== $name: rc=$rc $((SECONDS - start)) s" | tee -a "$OUT/steps.log"
  [ "$rc" = 0 ] || FAILED="$FAILED $name"
}
FAILED=""
DATA=${DATA:-data/tridigits/dataset.jsonl}
TRAIN_EPOCHS=${TRAIN_EPOCHS:-5}
ITEMS=${ITEMS:-1024}
if [ "${QUICK:-0}" = 1 ]; then TRAIN_EPOCHS=2; ITEMS=256; fi
RUNS=$(mktemp -d)
TRAIN=(-m training train --config tridigits --data "$DATA" --cache-dir "$RUNS/cache" --epochs "$TRAIN_EPOCHS"
  --compare-fusions false --progress false)

if [ -f "$DATA" ]; then
  step features "$PY" -m bench.features --device cuda --data "$DATA" --items "$ITEMS" --out "$OUT/features"
  step train-cuda "$PY" "${TRAIN[@]}" --device cuda --out-dir "$RUNS/cuda"
  step train-cuda-finetune "$PY" "${TRAIN[@]}" --device cuda --precision bf16 --finetune-last 1 --epochs 2 \
    --out-dir "$RUNS/finetune"
  step train-torchrun-1gpu "$PY" -m torch.distributed.run --standalone --nproc-per-node 1 "${TRAIN[@]}" \
    --device cuda --out-dir "$RUNS/torchrun"
  for run in cuda finetune torchrun; do  # the accuracies per epoch, next to the timings
    [ -f "$RUNS/$run/history.json" ] && cp "$RUNS/$run/history.json" "$OUT/train-$run-history.json"
  done
else
  echo "== training steps skipped: no $DATA (carry data/tridigits)" | tee -a "$OUT/steps.log"
fi

"$PY" -m bench --quick --set providers=cuda --set preprocess_threads="$cpus" --out "$OUT/server-1-process"
FUSIONSERVE_PROVIDERS=cuda "$PY" -m bench.scale --quick --bundles standin --modes one-process,front-ends \
  --ns 1,2,4,8 --out "$OUT/scale"
echo "bench/gpu/run.sh: results in $OUT"
if [ -n "$FAILED" ]; then echo "bench/gpu/run.sh: failed steps:$FAILED (logs in $OUT)"; exit 1; fi
