"""Search through the real server (docs/benchmarks.md, "Search: dimensions, encodings, zero-shot, rerank"): bytes
on the wire per encoding and dim, recall@1 per modality pair for float / int8 / binary at each dim, zero-shot next
to the trained classifier, and rerank against /v1/embeddings + numpy on the client.

    python -m bench.search [--model-dir models --model tridigits] [--data data/tridigits] [--items N]
                           [--dims 64,128,256] [--modalities image,text,audio,video] [--rerank-rounds 10] [--quick]

One `fusionserve serve` (one process, the default settings) on the newest version of --model; the items are the
--split rows of --data/dataset.jsonl (media paths relative to --data), each modality embedded alone as a search
user sends it. Writes bench/results/search.json (the command, the machine, the bundle's manifest digest) and
search.md, and prints the tables. A refusal (say int8 on a bundle without calibrated ranges) is recorded, not fatal.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import httpx

from bench import search_report
from bench.report import command_line, load_average, machine_info, write_small_run
from bench.search_data import load_rows
from bench.search_rerank import compare
from bench.search_stages import retrieval_at, wire_bytes, zero_shot_vs_classify
from bench.server import ServerProcess
from bench.workloads import resolve_bundle
from service.manifest import manifest_digest, sha256_file

OUT = Path(__file__).parent / "results"
QUICK = {"items": 24, "wire_items": 4, "rerank_rounds": 2}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--model", default="tridigits")
    parser.add_argument("--data", type=Path, default=Path("data/tridigits"), help="holds dataset.jsonl and media")
    parser.add_argument("--split", default="test")
    parser.add_argument("--items", type=int, help="at most this many rows of the split (default: all)")
    parser.add_argument("--dims", default="64,128,256", help="comma-separated dimensions")
    parser.add_argument("--modalities", default="image,text,audio,video", help="comma-separated")
    parser.add_argument("--wire-items", type=int, default=32, help="texts per request of the bytes-on-the-wire table")
    parser.add_argument("--rerank-rounds", type=int, default=10)
    parser.add_argument("--documents", type=int, default=100, help="documents per rerank query")
    parser.add_argument("--workers", type=int, default=0, help="FUSIONSERVE_WORKERS (0: one process)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK} (not for quoting)")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value if key != "items" else min(value, args.items or value))
    args.dims = [int(d) for d in args.dims.split(",")]
    args.modalities = tuple(m for m in args.modalities.split(",") if m)
    return args


def bundle_record(bundle) -> dict:
    manifest, directory = bundle.manifest, bundle.model_dir / bundle.name / bundle.version
    space, file_sha256 = manifest.joint_space, sha256_file(directory / "manifest.json")
    return {"name": bundle.name, "version": bundle.version, "directory": str(directory),
            "manifest_digest": manifest_digest(manifest), "manifest_file_sha256": file_sha256,
            "embedding_dim": manifest.embedding_dim, "matryoshka_dims": space.matryoshka_dims,
            "quantization_dims": sorted(int(d) for d in space.quantization),
            "zero_shot": space.zero_shot.model_dump() if space.zero_shot else None,
            "card": card_figures(manifest.metrics)}  # fmt: skip


def card_figures(metrics: dict) -> dict | None:
    """The model card's own search means (training/evaluate_search.py: per-slot embeddings of the test items),
    pairs left out: {"retrieval": {dim: {recall@1, label_recall@1}}, "encodings": {dim: {kind: {...}}}, ...}."""
    search = metrics.get("search")
    if not search:
        return None
    means = ("recall@1", "label_recall@1")
    return {"retrieval": {d: {k: r.get(k) for k in means} for d, r in search.get("retrieval", {}).items()},
            "encodings": {d: {kind: {k: r.get(k) for k in means} for kind, r in kinds.items()}
                          for d, kinds in search.get("encodings", {}).items()},
            "zero_shot": search.get("zero_shot"), "zero_shot_fit": search.get("zero_shot_fit")}  # fmt: skip


def timed(stages: dict, name: str, call):
    started = time.perf_counter()
    result = call()
    stages[name] = round(time.perf_counter() - started, 2)
    return result


def run(args, bundle, rows, texts: list[str], scratch: Path) -> dict:
    # a long deadline, door wait and queue: a 32-item request of images and audio queued behind another on a busy
    # 2-core machine, or 32 clips' frames in the image queue, must not turn into a 504 or a 429 (a refusal ends the
    # stage); nothing measured depends on them
    overrides = {"model_dir": str(bundle.model_dir.resolve()), "models": [bundle.name], "workers": args.workers,
                 "log_level": "warning", "default_deadline_ms": 120_000, "max_queue_wait_ms": 60_000,
                 "max_queued_items": 4096}  # fmt: skip
    manifest, stages = bundle.manifest, {}
    with (
        ServerProcess(overrides, scratch / "server.log") as server,
        httpx.Client(base_url=server.url, timeout=300, trust_env=False) as client,
    ):
        wire = timed(stages, "wire", lambda: wire_bytes(client, manifest.name, texts[: args.wire_items], args.dims))
        retrieval = {str(d): timed(stages, f"retrieval_{d}", lambda d=d: retrieval_at(
            client, manifest, rows, args.modalities, d)) for d in args.dims}  # fmt: skip
        zero_shot = timed(stages, "zero_shot", lambda: zero_shot_vs_classify(client, manifest, rows))
        rerank = timed(stages, "rerank", lambda: compare(
            client, manifest.name, texts, args.rerank_rounds, server.cpu_seconds, args.documents))  # fmt: skip
        ready_s = server.ready_s
    return {"server_ready_s": ready_s, "stage_seconds": stages, "wire": wire, "retrieval": retrieval,
            "zero_shot": zero_shot, "rerank": rerank}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        bundle = resolve_bundle(args.model_dir, args.model, scratch)
        args.modalities = tuple(m for m in args.modalities if getattr(bundle.manifest.encoders, m, None))  # it has
        rows = load_rows(args.data, list(bundle.manifest.labels), args.modalities, args.split, args.items)
        # the wire's texts and rerank's pool: every split's, so ten rounds of 101 need not repeat a text
        texts = [row.media["text"] for row in load_rows(args.data, list(bundle.manifest.labels), ("text",), None, None)]
        if not rows or len(texts) < 2:
            raise SystemExit(f"bench.search: {args.data} has no {args.split} rows with {args.modalities} and texts")
        started = time.perf_counter()
        measured = run(args, bundle, rows, texts, scratch)
    result = {"machine": machine_info(), "load_average_end": load_average(), "bundle": bundle_record(bundle),
              "data": str(args.data), "split": args.split, "rows": len(rows), "modalities": list(args.modalities),
              "dims": args.dims, "quick": args.quick, "wall_s": round(time.perf_counter() - started, 1),
              **measured}  # fmt: skip
    command = command_line("bench.search", argv)
    write_small_run(args.out, "search", command, result, search_report.render({"command": command, **result}))
    return result


def rewrite(out: Path = OUT) -> None:
    """search.md again from search.json (report wording changed, figures unchanged)."""
    result = json.loads((out / "search.json").read_text())
    (out / "search.md").write_text(search_report.render(result))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
