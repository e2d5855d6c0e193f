"""Closed- and open-loop load generators over any async `send(payload) -> status` (HTTP or in-process).

Every status is counted (200, 429, 5xx, timeout, conn_error, client_overflow), so rejected or failed
requests are visible instead of silently shortening the latency tail. Latencies are of 200s only.
Every loop is bounded by time and by count.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import numpy as np

from bench.rawhttp import RawClient

Send = Callable[[object], Awaitable[str]]
STARTED = time.perf_counter()
MAX_REQUESTS = 200_000  # hard cap per phase, whatever the duration
HANG_S = 60.0  # a closed-loop phase may overrun its duration by at most this (one stuck request)


def say(message: str) -> None:
    """Progress on stdout, stamped with seconds since the bench started (to see where the time goes)."""
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {message}", flush=True)


class Recorder:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.lags: list[float] = []  # open loop: actual send time - scheduled time (client health)

    def add(self, status: str, latency: float | None) -> None:
        self.statuses[status] += 1
        if status == "200" and latency is not None:
            self.latencies.append(latency)

    def summary(self, elapsed: float) -> dict:
        total = sum(self.statuses.values())
        ok = self.statuses.get("200", 0)
        out = {
            "requests": total,
            "ok": ok,
            "elapsed_s": round(elapsed, 3),
            "throughput": round(ok / elapsed, 2) if elapsed > 0 else 0.0,
            "error_rate": round((total - ok) / total, 4) if total else None,
            "status_counts": dict(sorted(self.statuses.items())),
            **percentiles_ms(self.latencies),
        }
        if self.lags:
            out["send_lag_p99_ms"] = round(float(np.percentile(self.lags, 99)) * 1000, 2)
        return out


def percentiles_ms(latencies: Sequence[float]) -> dict:
    if not latencies:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "mean_ms": None}
    p50, p90, p99 = np.percentile(latencies, [50, 90, 99]) * 1000
    return {
        "p50_ms": round(float(p50), 2),
        "p90_ms": round(float(p90), 2),
        "p99_ms": round(float(p99), 2),
        "mean_ms": round(float(np.mean(latencies)) * 1000, 2),
    }


Meter = Callable[[], dict[str, float]]  # CPU seconds so far, by side: {"server": …, "client": …}


async def window_cpu(meter: Meter, start: float, end: float) -> dict:
    """Cores used by each side between two perf_counter instants (read at both edges)."""
    await asyncio.sleep(start - time.perf_counter())
    before = meter()
    await asyncio.sleep(end - time.perf_counter())
    return {f"{side}_cpu_cores": round((used - before[side]) / (end - start), 2) for side, used in meter().items()}


async def closed_loop(
    send: Send, payloads: Sequence, *, concurrency: int, warmup_s: float, duration_s: float, meter: Meter | None = None
) -> dict:
    """`concurrency` clients, each sending its next request as soon as the previous one answers.

    Only answers that arrive inside the window [warm-up end, warm-up end + duration] count, for throughput
    and latency alike: steady state, without the ramp-up or the ramp-down when clients stop. `meter` is
    read at both window edges, so CPU use is of the window too.
    """
    record, issued = Recorder(), 0
    window_start = time.perf_counter() + warmup_s
    window_end = window_start + duration_s

    async def client() -> None:
        nonlocal issued
        while time.perf_counter() < window_end and issued < MAX_REQUESTS:
            payload = payloads[issued % len(payloads)]
            issued += 1
            sent = time.perf_counter()
            status = await send(payload)
            answered = time.perf_counter()
            if window_start <= answered <= window_end:
                record.add(status, answered - sent)

    reading = asyncio.create_task(window_cpu(meter, window_start, window_end)) if meter else None
    hung = False
    try:
        async with asyncio.timeout(warmup_s + duration_s + HANG_S):
            await asyncio.gather(*(client() for _ in range(concurrency)))
    except TimeoutError:  # a safety net only: every send has its own timeout or deadline
        hung = True
    summary = {**record.summary(duration_s), "hung": hung}
    if reading is not None:
        summary.update(await reading)
    return summary


async def open_loop(
    send: Send, payloads: Sequence, *, rate: float, duration_s: float, max_inflight: int, drain_s: float, seed: int
) -> dict:
    """Poisson arrivals at `rate`/s for `duration_s`, independent of how fast answers come back.

    Latency runs from the *scheduled* arrival, not from when the client got round to sending, so a
    lagging client or a full connection pool cannot hide queueing (no coordinated omission).
    """
    record, rng, pending = Recorder(), random.Random(seed), set()
    started, offset, index = time.perf_counter(), 0.0, 0

    async def one(payload, scheduled: float) -> None:
        record.lags.append(time.perf_counter() - scheduled)
        status = await send(payload)
        record.add(status, time.perf_counter() - scheduled)

    while index < MAX_REQUESTS:
        offset += rng.expovariate(rate)
        if offset > duration_s:
            break
        scheduled = started + offset
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        if len(pending) >= max_inflight:  # the client gives up rather than grow without bound
            record.add("client_overflow", None)
        else:
            task = asyncio.create_task(one(payloads[index % len(payloads)], scheduled))
            pending.add(task)
            task.add_done_callback(pending.discard)
        index += 1
    if pending:
        _, late = await asyncio.wait(set(pending), timeout=drain_s)
        for task in late:
            task.cancel()
            record.add("unfinished", None)
        await asyncio.gather(*late, return_exceptions=True)  # let the cancellations land before the next phase
    summary = record.summary(time.perf_counter() - started)
    summary["offered_rate"] = round(rate, 2)
    return summary


@asynccontextmanager
async def http_target(kind: str, host: str, port: int, path: str, *, max_connections: int, timeout_s: float):
    """(send, encode): `encode(body, headers)` turns a pre-built multipart body into what `send` takes."""
    if kind == "raw":
        client = RawClient(host, port, max_connections, timeout_s)
        try:
            yield client.send, lambda body, headers: client.build(path, body, headers)
        finally:
            await client.aclose()
        return
    async with http_client(max_connections, timeout_s) as client:
        yield http_sender(client, f"http://{host}:{port}{path}"), lambda body, headers: (body, headers)


@asynccontextmanager
async def spread_target(
    kind: str, host: str, ports: Sequence[int], path: str, *, max_connections: int, timeout_s: float
):
    """(send, encode) over several servers (one `http_target` per port): each request goes to the next server
    in turn, so a closed loop's clients load them evenly; `encode` builds one request per server."""
    async with AsyncExitStack() as stack:
        targets = [
            await stack.enter_async_context(
                http_target(kind, host, port, path, max_connections=max_connections, timeout_s=timeout_s)
            )
            for port in ports
        ]
        turn = itertools.count()

        async def send(payloads: tuple) -> str:
            index = next(turn) % len(targets)
            return await targets[index][0](payloads[index])

        yield send, lambda body, headers: tuple(encode(body, headers) for _, encode in targets)


def http_client(max_connections: int, timeout_s: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(limits=limits, timeout=timeout_s, trust_env=False)  # no proxy: 127.0.0.1 only


def http_sender(client: httpx.AsyncClient, url: str) -> Send:
    async def send(body: tuple[bytes, dict]) -> str:
        content, headers = body
        try:
            response = await client.post(url, content=content, headers=headers)
        except httpx.TimeoutException:
            return "timeout"
        except httpx.TransportError:
            return "conn_error"
        return str(response.status_code)

    return send


def uvloop_available() -> bool:
    """uvloop spends less client CPU per request than asyncio's own loop (the client shares the server's cores)."""
    try:
        import uvloop  # noqa: F401  (uvicorn[standard] brings it on Linux)
    except ImportError:
        return False
    return True


def run_loop(loop: str, coroutine):
    """Run `coroutine` to completion on a new event loop: "uvloop" or "asyncio"."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)
