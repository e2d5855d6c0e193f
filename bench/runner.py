"""The bench plan and the HTTP phases: closed loop per workload, then the open-loop latency sweep."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.loadgen import closed_loop, http_target, open_loop, say
from bench.server import HOST, ServerProcess
from bench.workloads import Bundle, Workload


@dataclass(frozen=True)
class Plan:
    duration_s: float = 8.0  # measured closed-loop window per workload and phase
    warmup_s: float = 1.5  # unmeasured closed loop before each measured one
    open_duration_s: float = 4.0  # arrivals per open-loop rate
    rates: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9, 1.1)  # fractions of the measured closed-loop capacity
    concurrency: int = 32  # closed-loop clients (= the default max batch size)
    pool: int = 32  # distinct pre-generated items per workload
    drain_s: float = 10.0  # open loop: how long to wait for answers after the last arrival
    max_inflight: int = 256  # open loop: client-side cap on outstanding requests (and HTTP connections)
    http_timeout_s: float = 30.0
    client: str = "raw"  # load generator's HTTP client: "raw" (bench/rawhttp.py) or "httpx"
    settings: tuple[tuple[str, object], ...] = ()  # extra server settings (--set), for every phase

    def as_dict(self) -> dict:
        return asdict(self)


# --quick: a smoke run (under a minute on a quiet 2-core box); 16 clients halve the ramp-down wait of the
# slow all-three phases. Its numbers are too short to quote.
QUICK = Plan(
    duration_s=1.5, warmup_s=0.5, open_duration_s=1.0, rates=(0.3, 0.7, 1.0), concurrency=16, pool=8, drain_s=5.0
)


def server_overrides(bundle: Bundle, plan: Plan, batching: bool) -> dict:
    """Settings for one server run (and the ceiling). Batching off = every component's max batch size is 1."""
    overrides = {"model_dir": str(bundle.model_dir), "models": [bundle.name], "log_level": "warning"}
    overrides.update(plan.settings)
    if not batching:
        overrides.update(max_batch_size=1, component_max_batch_size={})
    return overrides


def cpu_meter(server: ServerProcess):
    """CPU seconds of each side: on a shared 2-core box the client's share matters."""

    def read() -> dict[str, float]:
        used = {"client": time.process_time()}  # the load generator is this process
        server_cpu = server.cpu_seconds()
        if server_cpu is not None:
            used["server"] = server_cpu
        return used

    return read


def per_request(summary: dict, duration_s: float) -> dict:
    if summary.get("server_cpu_cores") is not None and summary["requests"]:
        summary["server_cpu_ms_per_request"] = round(
            summary["server_cpu_cores"] * duration_s / summary["requests"] * 1000, 2
        )
    return summary


async def measured(meter, phase) -> dict:
    """Run an open-loop phase (arrivals and drain) with the cores each side used over all of it."""
    before, started = meter(), time.perf_counter()
    summary = await phase
    elapsed = time.perf_counter() - started
    summary.update({f"{side}_cpu_cores": round((used - before[side]) / elapsed, 2) for side, used in meter().items()})
    return per_request(summary, elapsed)


async def run_server(
    bundle: Bundle, workloads: list[Workload], plan: Plan, *, batching: bool, sweep: bool, log_dir: Path
) -> dict:
    """Start the server, load it with each workload (closed loop, then the open-loop sweep if asked), stop it."""
    label = "on" if batching else "off"
    server = ServerProcess(server_overrides(bundle, plan, batching), log_dir / f"server-batching-{label}.log")
    out: dict = {"workloads": {}, "process": {}}
    with server:
        out["process"]["ready_s"] = round(server.ready_s, 2)
        say(f"  server ready in {server.ready_s:.1f}s on {server.url}")
        path = f"/v1/models/{bundle.name}/classify?version={bundle.version}"
        target = http_target(
            plan.client, HOST, server.port, path, max_connections=plan.max_inflight, timeout_s=plan.http_timeout_s
        )
        async with target as (send, encode):
            for workload in workloads:
                requests = [encode(body, headers) for body, headers in workload.bodies]
                result = await load_workload(server, send, requests, plan, f"{workload.name:<11} batching {label:<3}")
                if sweep:
                    capacity = result["closed"]["throughput"]
                    result["open_loop"] = await sweep_rates(server, send, requests, capacity, plan, workload.name)
                out["workloads"][workload.name] = result
        out["process"] |= server.memory_mb()
    return out


async def load_workload(server: ServerProcess, send, requests: list, plan: Plan, label: str) -> dict:
    """Closed loop: warm-up, then the measured window."""
    closed = await closed_loop(
        send,
        requests,
        concurrency=plan.concurrency,
        warmup_s=plan.warmup_s,
        duration_s=plan.duration_s,
        meter=cpu_meter(server),
    )
    per_request(closed, plan.duration_s)
    say(
        f"  server   {label} {closed['throughput']:8.1f} req/s  p50 {closed['p50_ms']} ms  "
        f"p99 {closed['p99_ms']} ms  errors {closed['error_rate']}"
    )
    return {"closed": closed}


async def sweep_rates(server: ServerProcess, send, requests: list, capacity: float, plan: Plan, name: str) -> list:
    """Open loop at each fraction of the measured capacity (at least 1 req/s)."""
    points = []
    for index, fraction in enumerate(plan.rates):
        rate = max(1.0, fraction * capacity)
        phase = open_loop(
            send,
            requests,
            rate=rate,
            duration_s=plan.open_duration_s,
            max_inflight=plan.max_inflight,
            drain_s=plan.drain_s,
            seed=index,
        )
        point = {"fraction_of_capacity": fraction, **await measured(cpu_meter(server), phase)}
        points.append(point)
        say(
            f"  open     {name:<11} {fraction:>4.2f}x {rate:8.1f} req/s offered  "
            f"p50 {point['p50_ms']} ms  p99 {point['p99_ms']} ms  errors {point['error_rate']}"
        )
    return points
