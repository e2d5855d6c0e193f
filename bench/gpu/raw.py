"""`python -m bench.gpu.raw`: raw onnxruntime items/s per encoder at batch 1–256 on one provider — the ceiling the
server's throughput is judged against on a GPU (bench/gpu/run.sh, docs/benchmarks.md "GPU").

Each encoder of the bundle runs the bench's own inputs (bench/workloads.py: 224–640 px PNG photos, 1–3 s speech,
4–24-word texts) after the server's preprocessing, repeated to the batch size, with the server's session and
provider options (FUSIONSERVE_* settings, e.g. FUSIONSERVE_CUDA_CUDNN_CONV_ALGO_SEARCH). A batch that fails (out
of memory) ends that encoder's sweep and is recorded. `--providers cpu --max-batch 8` is a smoke run anywhere.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.report import command_line, write_small_run
from bench.workloads import GENERATORS, resolve_bundle
from service.engine.bundle import load_bundle
from service.engine.components import EncoderComponent
from service.items import RawItem
from service.preprocess.prepare import prepare_item
from service.settings import load_settings

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def payload(bundle, modality: str, settings, seed: int = 0):
    raw = RawItem(**{modality: GENERATORS[modality](np.random.default_rng(seed))})
    return prepare_item(raw, bundle.manifest, bundle.tokenizer, settings).arrays[modality]


def items_per_second(encoder: EncoderComponent, item, batch: int, min_s: float) -> dict:
    feeds = encoder.feeds([item] * batch)
    for _ in range(2):  # warm-up: allocations, cuDNN algorithm choice for this shape
        encoder.model.run(feeds)
    runs, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < min_s or runs < 3:
        encoder.model.run(feeds)
        runs += 1
    return {"items_per_s": round(batch * runs / elapsed, 1), "ms_per_batch": round(1000 * elapsed / runs, 3)}


def sweep(encoder: EncoderComponent, item, max_batch: int, min_s: float) -> dict[str, dict]:
    rows = {}
    for batch in (b for b in BATCHES if b <= max_batch):
        try:
            rows[str(batch)] = items_per_second(encoder, item, batch, min_s)
        except Exception as error:  # out of device memory, typically: the sweep ends here
            rows[str(batch)] = {"error": str(error).splitlines()[0][:200]}
            break
    return rows


def markdown(result: dict) -> str:
    batches = sorted({int(b) for rows in result["encoders"].values() for b in rows})
    lines = [f"Command: `{result['command']}`", "", f"Provider: {result['provider']}", "",
             "| encoder | " + " | ".join(f"batch {b}" for b in batches) + " |",
             "|---|" + "---:|" * len(batches)]  # fmt: skip
    for modality, rows in result["encoders"].items():
        cells = [rows.get(str(b), {}) for b in batches]
        shown = [f"{c['items_per_s']:,.0f}" if "items_per_s" in c else ("OOM/err" if c else "–") for c in cells]
        lines.append(f"| {modality} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n\nitems/s: items (not batches) per second, one session, one thread calling it.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu.raw", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="a bundle tree (default: the bench's stand-in bundle)")
    parser.add_argument("--model", help="model name under --model-dir (default: the only one)")
    parser.add_argument("--providers", default="cuda", choices=("cuda", "cpu", "auto"))
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--min-seconds", type=float, default=1.0, help="timed seconds per batch size")
    parser.add_argument("--out", type=Path, default=Path("bench/results/gpu"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        bundle_ref = resolve_bundle(args.model_dir, args.model, Path(scratch))
        settings = load_settings(model_dir=bundle_ref.model_dir, providers=args.providers, warmup_batch_sizes=[1])
        bundle = load_bundle(bundle_ref.model_dir / bundle_ref.name / bundle_ref.version, settings)
        if args.providers == "cuda" and bundle.provider != "CUDAExecutionProvider":
            raise SystemExit(f"bench.gpu.raw: CUDA asked for, onnxruntime runs on {bundle.provider}")
        encoders = {m: sweep(e, payload(bundle, m, settings), args.max_batch, args.min_seconds)
                    for m, e in bundle.encoders.items()}  # fmt: skip
    command = command_line("bench.gpu.raw", argv)
    result = {"command": command, "provider": bundle.provider, "bundle": bundle_ref.name, "encoders": encoders}
    write_small_run(args.out, "raw", command, result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
