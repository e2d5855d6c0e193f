"""The in-process ceiling: the server's own data plane without HTTP.

Same bundle and settings as the server, loaded by the same Registry (verify, golden replay, warm-up);
the same preprocessing (`prepare_item` in a thread pool of `preprocess_threads`); the same batch policy
(the real Pipeline and its Batchers). What is left out is exactly what HTTP adds: the socket, uvicorn,
multipart parsing, routing, JSON responses — so server/ceiling is the cost of the HTTP layer.
"""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench.loadgen import Send, closed_loop, say
from bench.workloads import Bundle, Workload
from service.engine.registry import Registry
from service.errors import FusionError
from service.items import RawItem
from service.metrics import Metrics
from service.models import VersionState
from service.preprocess.prepare import prepare_item
from service.settings import Settings


def ceiling_sender(state: VersionState, settings: Settings, pool: ThreadPoolExecutor) -> Send:
    manifest, tokenizer, pipeline = state.bundle.manifest, state.bundle.tokenizer, state.pipeline
    deadline_s = settings.default_deadline_ms / 1000

    async def send(raw: RawItem) -> str:
        loop = asyncio.get_running_loop()
        try:
            item = await loop.run_in_executor(pool, prepare_item, raw, manifest, tokenizer, settings)
            await pipeline.run(item, time.monotonic() + deadline_s)
        except FusionError as error:  # 429 queue full, 504 deadline…: counted like the server's answers
            return str(error.status)
        return "200"

    return send


async def load(bundle: Bundle, settings: Settings) -> Registry:
    registry = Registry(settings, Metrics())
    await registry.load_all(registry.discover())
    state = registry.models[bundle.name].versions[bundle.version]
    if state.status != "ready":
        await registry.stop()
        raise SystemExit(f"bench: bundle {bundle.name}/{bundle.version} did not load: {state.reason}")
    return registry


async def run_ceiling(bundle: Bundle, settings: Settings, workloads: list[Workload], plan) -> dict:
    """{workload: {"profile": per-item stage costs, "closed": closed-loop summary}}."""
    registry = await load(bundle, settings)
    state = registry.get(bundle.name, bundle.version)
    pool = ThreadPoolExecutor(settings.preprocess_threads, thread_name_prefix="bench-preprocess")
    results = {}
    try:
        send = ceiling_sender(state, settings, pool)
        for workload in workloads:
            profile = await asyncio.to_thread(stage_costs, state, settings, workload)
            closed = await closed_loop(
                send,
                workload.raw,
                concurrency=plan.concurrency,
                warmup_s=plan.warmup_s,
                duration_s=plan.duration_s,
                meter=lambda: {"process": time.process_time()},
            )
            if closed["requests"]:  # the whole data plane's CPU per item, to set against the server's
                closed["cpu_ms_per_item"] = round(
                    closed["process_cpu_cores"] * plan.duration_s / closed["requests"] * 1e3, 2
                )
            results[workload.name] = {"profile": profile, "closed": closed}
            say(f"  ceiling  {workload.name:<11} {closed['throughput']:8.1f} items/s  p99 {closed['p99_ms']} ms")
    finally:
        await registry.stop()
        pool.shutdown(wait=True)
    return results


def stage_costs(state: VersionState, settings: Settings, workload: Workload) -> dict:
    """Single-threaded cost of one item's preprocessing and of its model compute, at batch 1 and at the
    max batch size: says how much work batching can amortise (when compute is a small share, batching
    on/off and server/ceiling mostly measure per-request overhead)."""
    manifest, tokenizer, pipeline = state.bundle.manifest, state.bundle.tokenizer, state.pipeline
    started = time.perf_counter()
    items = [prepare_item(raw, manifest, tokenizer, settings) for raw in workload.raw]
    prepare_s = (time.perf_counter() - started) / len(items)
    started = time.perf_counter()
    for item in items:
        pipeline.run_direct([item])
    batch1_s = (time.perf_counter() - started) / len(items)
    size = settings.batch_size_for("fusion")
    batch = (items * math.ceil(size / len(items)))[:size]
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        pipeline.run_direct(batch)
        timings.append((time.perf_counter() - started) / size)
    batched_s = float(np.median(timings))
    return {
        "preprocess_ms": round(prepare_s * 1000, 3),
        "compute_batch1_ms": round(batch1_s * 1000, 3),
        "compute_batched_ms_per_item": round(batched_s * 1000, 3),
        "batch_size": size,
        "compute_share_batch1": round(batch1_s / (prepare_s + batch1_s), 3),
    }
