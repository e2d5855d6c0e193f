"""One comparison run: the in-process ceiling, then fusionserve and every peer in turn, each under the same
closed loop (bench/loadgen.py + bench/rawhttp.py, the raw keep-alive client) at
c=32 and c=1, JSON, one item per request."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from bench.batch1 import run_batch1
from bench.ceiling import run_ceiling
from bench.loadgen import closed_loop, say
from bench.peers.launch import PEERS, PeerProcess, request_for, top1
from bench.rawhttp import RawClient
from bench.runner import cpu_meter
from bench.server import HOST, ServerProcess
from bench.workloads import Bundle, Workload
from service.settings import load_settings

FUSIONSERVE = "fusionserve"
PARITY_ITEMS = 4  # answers compared with fusionserve's, per workload
JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class PeerPlan:
    runs: int = 5  # alternating runs: every server once per run, the order rotated from run to run
    duration_s: float = 10.0  # measured window at c=32
    warmup_s: float = 2.0
    c1_duration_s: float = 5.0  # measured window at c=1
    c1_warmup_s: float = 1.0
    concurrency: int = 32
    pool: int = 32  # distinct pre-generated items per workload
    threads: int = 2  # onnxruntime intra-op threads, every server and the ceiling
    batch_delay_ms: float = 5.0  # LitServe batch_timeout, Triton max queue delay (fusionserve's default)
    http_timeout_s: float = 30.0
    batch1_repeats: int = 200  # in-process batch-1 items per workload per run (the c=1 target's baseline)

    def as_dict(self) -> dict:
        return asdict(self)


QUICK = PeerPlan(runs=1, duration_s=3.0, warmup_s=1.0, c1_duration_s=2.0, c1_warmup_s=0.5, pool=8, batch1_repeats=30)


def fusionserve_overrides(bundle: Bundle, plan: PeerPlan) -> dict:
    return {
        "model_dir": str(bundle.model_dir),
        "models": [bundle.name],
        "log_level": "warning",
        "intra_op_threads": plan.threads,
    }


@dataclass
class Target:
    """A server under test: how to start it and how to address it."""

    name: str
    style: str  # request protocol, see launch.request_for
    path: str | None  # fixed request path (fusionserve), else the peer's own

    def requests(self, model: str, workload: Workload) -> list[tuple[str, bytes]]:
        (modality,) = workload.modalities
        out = []
        for raw in workload.raw:
            path, body = request_for(self.style, model, modality, getattr(raw, modality))
            out.append((self.path or path, body))
        return out


def targets(peers: list[str], bundle: Bundle) -> list[Target]:
    path = f"/v1/models/{bundle.name}/classify?version={bundle.version}"
    return [Target(FUSIONSERVE, "v1", path)] + [Target(p, PEERS[p].style, None) for p in peers]


def start(target: Target, bundle: Bundle, plan: PeerPlan, venvs: Path, log_dir: Path):
    log = log_dir / f"{target.name}.log"
    if target.name == FUSIONSERVE:
        return ServerProcess(fusionserve_overrides(bundle, plan), log)
    bundle_dir = (bundle.model_dir / bundle.name / bundle.version).resolve()
    return PeerProcess(PEERS[target.name], venvs, bundle_dir, plan.threads, log)


async def parity(url: str, requests: list[tuple[str, bytes]], style: str, labels: list[str]) -> list:
    """The first answers in full (outside any timing): [label, score] each, or the error."""
    out = []
    async with httpx.AsyncClient(timeout=30.0, trust_env=False) as client:
        for path, body in requests[:PARITY_ITEMS]:
            response = await client.post(url + path, content=body, headers=JSON_HEADERS)
            if response.status_code != 200:
                out.append(f"HTTP {response.status_code}: {response.text[:200]}")
            else:
                out.append(list(top1(style, response.json(), labels)))
    return out


async def measure(server, target: Target, bundle: Bundle, workloads: list[Workload], plan: PeerPlan) -> dict:
    client = RawClient(HOST, server.port, plan.concurrency, plan.http_timeout_s)
    out = {}
    try:
        for workload in workloads:
            requests = target.requests(bundle.name, workload)
            answers = await parity(server.url, requests, target.style, bundle.manifest.labels)
            payloads = [client.build(path, body, JSON_HEADERS) for path, body in requests]
            loops = {}
            for key, concurrency, warmup_s, duration_s in (
                ("c32", plan.concurrency, plan.warmup_s, plan.duration_s),
                ("c1", 1, plan.c1_warmup_s, plan.c1_duration_s),
            ):
                opened = client.connections_opened
                loops[key] = await closed_loop(
                    client.send,
                    payloads,
                    concurrency=concurrency,
                    warmup_s=warmup_s,
                    duration_s=duration_s,
                    meter=cpu_meter(server),
                )
                loops[key]["connections_opened"] = client.connections_opened - opened
            say(
                f"  {target.name:<11} {workload.name:<10} {loops['c32']['throughput']:7.1f} req/s  "
                f"p50 {loops['c32']['p50_ms']} p99 {loops['c32']['p99_ms']} ms at c={plan.concurrency}; "
                f"p50 {loops['c1']['p50_ms']} ms at c=1; errors {loops['c32']['error_rate']}"
            )
            out[workload.name] = {**loops, "parity": answers}
    finally:
        await client.aclose()
    return out


async def run_target(target: Target, bundle: Bundle, workloads, plan: PeerPlan, venvs: Path, log_dir: Path):
    try:
        server = await asyncio.to_thread(start, target, bundle, plan, venvs, log_dir)
        with server:
            say(f"  {target.name} ready in {server.ready_s:.1f}s on {server.url}")
            measured = await measure(server, target, bundle, workloads, plan)
            return {"ready_s": round(server.ready_s, 2), **server.memory_mb(), "workloads": measured}
    except (RuntimeError, SystemExit, OSError, httpx.HTTPError, json.JSONDecodeError, KeyError) as error:
        reason = f"{type(error).__name__}: {error}"
        say(f"  {target.name} FAILED: {reason.splitlines()[0]}")
        return {"error": reason[-3000:]}


async def one_run(index: int, all_targets: list[Target], bundle, workloads, plan, venvs, log_dir) -> dict:
    """The ceiling, then every target once, in an order rotated by the run index."""
    say(f"run {index + 1}/{plan.runs}: in-process ceiling (batch {plan.concurrency}) …")
    settings = load_settings(**fusionserve_overrides(bundle, plan))
    ceiling = await run_ceiling(bundle, settings, workloads, plan)
    batch1 = await asyncio.to_thread(run_batch1, bundle, settings, workloads, plan.batch1_repeats)
    say("  in-process batch-1 p50: " + ", ".join(f"{w} {v['p50_ms']} ms" for w, v in batch1.items()))
    order = all_targets[index % len(all_targets) :] + all_targets[: index % len(all_targets)]
    results = {"order": [t.name for t in order], "ceiling": ceiling, "batch1": batch1, "servers": {}}
    for target in order:
        results["servers"][target.name] = await run_target(target, bundle, workloads, plan, venvs, log_dir)
    return results


async def run_all(peers, bundle, workloads, plan: PeerPlan, venvs: Path, log_dir: Path) -> list[dict]:
    all_targets, runs = targets(peers, bundle), []
    for index in range(plan.runs):
        run = await one_run(index, all_targets, bundle, workloads, plan, venvs, log_dir)
        runs.append(run)
        failed = {name for name, r in run["servers"].items() if "error" in r and name != FUSIONSERVE}
        all_targets = [t for t in all_targets if t.name not in failed]  # a peer that failed once is not retried
    return runs
