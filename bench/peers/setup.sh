#!/usr/bin/env bash
# Peer venvs for `python -m bench.peers`, OUTSIDE the repository (never the project's .venv), one per peer:
#   $BENCH_VENVS/fastapi   hand-written FastAPI endpoint, no batching (same fastapi/uvicorn as fusionserve)
#   $BENCH_VENVS/litserve  LitServe (max_batch_size / batch_timeout batching)
#   $BENCH_VENVS/pytriton  PyTriton (nvidia-pytriton: Triton's dynamic batcher)
# Each gets the project's own onnxruntime, tokenizers and Pillow versions, so the peers run the same ONNX
# with the same tokenizer and decoder builds. Idempotent: a venv whose requirements did not change is kept.
# A peer that fails to install is reported and skipped (the bench records why); the others go on.
# Usage: bench/peers/setup.sh [peer ...]      (default: all three)
set -uo pipefail
cd "$(dirname "$0")/../.."
PROJECT_PY=${PROJECT_PY:-.venv/bin/python}
BENCH_VENVS=${BENCH_VENVS:-/work/bench-venvs}
BASE_PY=${BASE_PY:-$("$PROJECT_PY" -c 'import sys; print(sys._base_executable)')}

version() { "$PROJECT_PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
COMMON="onnxruntime==$(version onnxruntime) tokenizers==$(version tokenizers) pillow==$(version pillow) numpy"
SERVER="fastapi==$(version fastapi) uvicorn[standard]==$(version uvicorn)"

requirements() {
  case "$1" in
    fastapi) echo "$COMMON $SERVER" ;;
    litserve) echo "$COMMON litserve" ;;
    pytriton) echo "$COMMON nvidia-pytriton" ;;
    *) return 1 ;;
  esac
}

install_peer() {
  local peer=$1 venv="$BENCH_VENVS/$1" wanted
  wanted=$(requirements "$peer") || { echo "setup: unknown peer $peer" >&2; return 2; }
  if [[ -f "$venv/.installed" && "$(cat "$venv/.installed")" == "$wanted" ]]; then
    echo "setup: $peer up to date ($venv)"
    return 0
  fi
  echo "setup: installing $peer into $venv: $wanted"
  rm -rf "$venv" && "$BASE_PY" -m venv "$venv" || return 1
  "$venv/bin/pip" install --quiet --upgrade pip || return 1
  # shellcheck disable=SC2086  # the requirement list is word-split on purpose
  if ! "$venv/bin/pip" install --quiet $wanted > "$venv/install.log" 2>&1; then
    echo "setup: $peer failed to install; last lines of $venv/install.log:" >&2
    tail -n 15 "$venv/install.log" >&2
    return 1
  fi
  echo "$wanted" > "$venv/.installed"
}

mkdir -p "$BENCH_VENVS"
status=0
for peer in "${@:-fastapi litserve pytriton}"; do
  for p in $peer; do install_peer "$p" || status=1; done
done
exit $status
