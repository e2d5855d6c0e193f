"""`python -m bench.batch1 [--model-dir models] [--model tridigits]`: the in-process batch-1 time of one item —
the server's own preprocessing (`prepare_item`), encoder and fusion sessions called directly, no queue, no
HTTP — per workload. The c=1 target compares the server's c=1 p50 (bench.peers) with this.
Writes bench/results/peers/batch1.json with the command."""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

from bench import report
from bench.workloads import build_workloads, resolve_bundle
from service.engine.bundle import load_bundle
from service.engine.pipeline import run_direct
from service.preprocess.prepare import prepare_item
from service.settings import load_settings

OUT = Path(__file__).resolve().parent / "results" / "peers" / "batch1.json"
C1_WORKLOADS = ("text-only", "image-only")


def batch1_ms(bundle, settings, raw_items, repeats: int) -> dict:
    """Median and p10 of decode + preprocess + encoders + fusion for one item at a time."""
    times = []
    for i in range(repeats):
        raw = raw_items[i % len(raw_items)]
        start = time.perf_counter()
        item = prepare_item(raw, bundle.manifest, bundle.tokenizer, settings)
        run_direct(bundle.encoders, bundle.fusion, [item])
        times.append(time.perf_counter() - start)
    times.sort()
    return {"p50_ms": round(statistics.median(times) * 1000, 3), "p10_ms": round(times[len(times) // 10] * 1000, 3)}


def run_batch1(bundle_info, settings, workloads, repeats: int = 200) -> dict:
    """{workload: batch1_ms} for the text-only and image-only workloads; bench.peers calls this in every run,
    so the c=1 target compares the server with the in-process time measured minutes apart, not hours."""
    bundle = load_bundle(bundle_info.model_dir / bundle_info.name / bundle_info.version, settings)
    return {w.name: batch1_ms(bundle, settings, w.raw, repeats) for w in workloads if w.name in C1_WORKLOADS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batch1", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--model", default="tridigits")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args(argv)
    bundle_info = resolve_bundle(args.model_dir, args.model, Path("/nonexistent"))
    settings = load_settings(model_dir=bundle_info.model_dir, intra_op_threads=2, providers="cpu")
    out = {"command": shlex.join(["python -m bench.batch1", *(argv or sys.argv[1:])]),
           "machine": report.machine_info(), "intra_op_threads": 2}  # fmt: skip
    out["workloads"] = run_batch1(bundle_info, settings, build_workloads(bundle_info, pool=16)[0], args.repeats)
    for name, times in out["workloads"].items():
        print(name, times, flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
