"""Bulk job (`fusionserve batch` on a local Ray) against the HTTP server at the same concurrency, same items.

    python -m bench.bulk [--model-dir models --model tridigits] [--texts 2000 --images 500] [--concurrency 2]

Each side answers the same corpus (texts, then images) with `--concurrency` workers: N Ray Data actors, or N HTTP
clients each sending `--batch-size` items per request to one `fusionserve serve` (one process). Reported: items/s
(bulk: the whole job, actor start-up and the bundle load included; the server: already warm), CPU seconds per
item (the process tree of each side: driver + Ray + actors; server + this client). Writes
bench/results/bulk/README.md and results.json with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench.server import ServerProcess, tree_cpu_seconds

OUT = Path("bench/results/bulk")


def corpus(root: Path, texts: int, images: int) -> list[dict]:
    """Texts drawn from a fixed vocabulary and small PNGs of varied sizes (tests/bundles.py's samples)."""
    from tests.bundles import WORDS, sample_inputs

    rng = np.random.default_rng(0)
    rows = [{"id": f"t{i}", "text": " ".join(rng.choice(WORDS, int(rng.integers(3, 20))))} for i in range(texts)]
    (root / "media").mkdir(exist_ok=True)
    for i in range(images):
        (root / f"media/{i}.png").write_bytes(sample_inputs(i)["image"])
        rows.append({"id": f"i{i}", "image": f"media/{i}.png"})
    (root / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


class CpuPeak:
    """CPU seconds of this process's tree (driver, Ray's daemons and workers), sampled: an actor's time is lost
    once it exits, so the peak of the live tree's total is kept."""

    def __init__(self):
        self.start, self.peak, self.done = tree_cpu_seconds(os.getpid()) or 0.0, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while not self.done.wait(0.2):
            self.peak = max(self.peak, tree_cpu_seconds(os.getpid()) or 0.0)

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        return max(self.peak, tree_cpu_seconds(os.getpid()) or 0.0) - self.start


def run_bulk(args, root: Path, rows: list[dict]) -> dict:
    import ray

    from service.bulk.job import BulkJob, run_job

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        meter = CpuPeak()
        job = BulkJob(model_dir=args.model_dir, model=args.model, input=str(root / "items.jsonl"),
                      output=str(root / "out.parquet"), task="classify", concurrency=args.concurrency,
                      batch_size=args.batch_size)  # fmt: skip
        summary = run_job(job)
        cpu = meter.stop()
    finally:
        ray.shutdown()
    rows_done = summary["rows"]
    return {"items": rows_done, "errors": summary["errors"], "seconds": summary["seconds"],
            "items_per_s": round(rows_done / summary["seconds"], 1), "cpu_s_per_item": cpu / rows_done}  # fmt: skip


def http_item(root: Path, row: dict) -> dict:
    if "text" in row:
        return {"text": row["text"]}
    return {"image": base64.b64encode((root / row["image"]).read_bytes()).decode()}


async def _clients(url: str, batches: list[list[dict]], concurrency: int) -> int:
    queue = list(reversed(batches))
    done = 0

    async def client(http: httpx.AsyncClient):
        nonlocal done
        while queue:
            batch = queue.pop()
            response = await http.post(url, json={"inputs": batch})
            response.raise_for_status()
            done += len(batch)

    async with httpx.AsyncClient(timeout=120, trust_env=False) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return done


def run_http(args, root: Path, rows: list[dict]) -> dict:
    items = [http_item(root, row) for row in rows]
    batches = [items[i : i + args.batch_size] for i in range(0, len(items), args.batch_size)]
    overrides = {"model_dir": args.model_dir, "models": [args.model], "log_level": "warning", "workers": 0}
    with ServerProcess(overrides, root / "server.log") as server:
        cpu0, client0, started = server.cpu_seconds() or 0.0, time.process_time(), time.perf_counter()
        done = asyncio.run(_clients(f"{server.url}/v1/models/{args.model}/classify", batches, args.concurrency))
        seconds = time.perf_counter() - started
        cpu = (server.cpu_seconds() or 0.0) - cpu0 + time.process_time() - client0
        ready_s = server.ready_s
    return {"items": done, "seconds": round(seconds, 3), "items_per_s": round(done / seconds, 1),
            "cpu_s_per_item": cpu / done, "server_ready_s": ready_s}  # fmt: skip


def report(results: dict) -> str:
    bulk, http = results["bulk"], results["http"]
    lines = [
        "# Bulk job vs HTTP server", "", f"Command: `{results['command']}`", "",
        f"Corpus: {results['texts']} texts + {results['images']} images, bundle `{results['model']}`, "
        f"concurrency {results['concurrency']} (actors / HTTP clients), batch {results['batch_size']}. "
        "Measured side by side in one run on a shared 2-core machine: compare the ratio, not the absolutes.", "",
        "| path | items | seconds | items/s | CPU ms/item |", "|---|---|---|---|---|",
        f"| bulk (Ray Data, start-up included) | {bulk['items']} | {bulk['seconds']} | {bulk['items_per_s']} "
        f"| {bulk['cpu_s_per_item'] * 1000:.2f} |",
        f"| HTTP server (warm) + client | {http['items']} | {http['seconds']} | {http['items_per_s']} "
        f"| {http['cpu_s_per_item'] * 1000:.2f} |", "",
        f"Bulk/HTTP items/s: {bulk['items_per_s'] / http['items_per_s']:.2f}x. The server's own start-up "
        f"(load, golden replay, warm-up) took {http['server_ready_s']:.1f} s and is not in its figure; the bulk "
        f"figures include that start-up once per actor (wall and CPU) and Ray's own daemons, so the gap in CPU per "
        "item narrows as the corpus grows.",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def rewrite(out: Path) -> None:
    """The README again from results.json (report wording changed, figures unchanged)."""
    (out / "README.md").write_text(report(json.loads((out / "results.json").read_text())))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--model", default="tridigits")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.model_dir = str(Path(args.model_dir).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = corpus(root, args.texts, args.images)
        http = run_http(args, root, rows)
        bulk = run_bulk(args, root, rows)
    results = {"command": " ".join(["python -m bench.bulk", *(sys.argv[1:] if argv is None else argv)]),
               "model": args.model, "texts": args.texts, "images": args.images, "concurrency": args.concurrency,
               "batch_size": args.batch_size, "bulk": bulk, "http": http}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "README.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
