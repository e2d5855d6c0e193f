"""`python -m bench.engine_calls`: one engine process driven straight over its wire, no HTTP — what the engine
itself spends per call, so the cost of the engine loop is seen apart from a front-end's.

The engine (`python -m service.engine.server`) serves the stand-in bundle (bench.workloads, random weights,
near-free graphs); this process prepares text items once and keeps C calls in flight through one RemoteBackend
for D seconds. Reported: calls/s, the engine's CPU µs per call (/proc, over the measured window), this
process's CPU µs per call, and 1e6 / engine µs (the calls/s one engine process could take). `--profile FILE`
runs the engine under cProfile (slower; for finding where the time goes, not for quoting).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.report import command_line, machine_info
from bench.server import cpu_seconds_of, settings_env
from bench.workloads import resolve_bundle
from service.frontend.remote.backend import RemoteBackend
from service.items import RawItem
from service.manifest import read_manifest
from service.preprocess import load_tokenizer
from service.preprocess.prepare import prepare_item
from service.settings import Settings

TEXTS = ["the quick brown fox", "seven", "a photo of a handwritten digit", "nine eight", "four"]


def start_engine(model_dir: Path, endpoint: str, profile: str | None, threads: int) -> subprocess.Popen:
    env = os.environ | settings_env({"model_dir": str(model_dir), "intra_op_threads": threads, "providers": "cpu"})
    prefix = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
    return subprocess.Popen([*prefix, "-m", "service.engine.server", endpoint], env=env)


def prepared_items(model_dir: Path, model: str, version: str, settings: Settings) -> list:
    directory = model_dir / model / version
    manifest = read_manifest(directory / "manifest.json")
    spec = manifest.encoders.text.preprocess
    tokenizer = load_tokenizer(directory / spec.tokenizer_file, spec)
    return [prepare_item(RawItem(text=t), manifest, tokenizer, settings) for t in TEXTS]


async def closed_loop(backend, model: str, version: str, items: list, clients: int, seconds: float) -> int:
    done, stop = 0, time.monotonic() + seconds

    async def client(index: int) -> None:
        nonlocal done
        while time.monotonic() < stop:
            await backend.run(model, version, [items[index % len(items)]], time.monotonic() + 10)
            done += 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    return done


async def measure(args, model_dir: Path, model: str, version: str, engine: subprocess.Popen, endpoint: str) -> dict:
    settings = Settings(model_dir=model_dir)
    backend = RemoteBackend([endpoint], settings, front_ends=1)
    await backend.start()
    try:
        while not backend.models.all_ready():
            await asyncio.sleep(0.05)
        items = prepared_items(model_dir, model, version, settings)
        await closed_loop(backend, model, version, items, args.clients, args.warmup)
        engine_before, own_before = cpu_seconds_of(engine.pid), time.process_time()
        calls = await closed_loop(backend, model, version, items, args.clients, args.duration)
        engine_s, own_s = cpu_seconds_of(engine.pid) - engine_before, time.process_time() - own_before
    finally:
        await backend.stop()
    engine_us = engine_s / calls * 1e6
    return {"clients": args.clients, "calls": calls, "calls_per_s": calls / args.duration,
            "engine_us_per_call": engine_us, "client_us_per_call": own_s / calls * 1e6,
            "engine_calls_per_s_projection": 1e6 / engine_us}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine_calls", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--intra-op-threads", type=int, default=1)
    parser.add_argument("--profile", help="write the engine's cProfile stats here")
    parser.add_argument("--out", type=Path, help="write results.json here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fusionserve-engine-calls-") as scratch:
        bundle = resolve_bundle(None, None, Path(scratch) / "models")
        endpoint = f"ipc://{scratch}/engine.sock"
        engine = start_engine(bundle.model_dir, endpoint, args.profile, args.intra_op_threads)
        try:
            result = asyncio.run(measure(args, bundle.model_dir, bundle.name, bundle.version, engine, endpoint))
        finally:
            engine.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                engine.wait(30)
    result |= {"command": command_line("bench.engine_calls", argv), "machine": machine_info(),
               "date": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
