"""The data plane behind classify and embed: read → preprocess (thread pool) → pipeline → response.

Owns the request-level concerns: deadline, client disconnect, metrics per request, Server-Timing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from fastapi import Request
from fastapi.responses import JSONResponse

from service.api.inputs import read_items
from service.errors import FusionError, InvalidInput
from service.inference.pipeline import ItemResult
from service.inference.prepare import PreparedItem, prepare_item
from service.inference.registry import VersionState

DEADLINE_HEADER = "x-request-timeout-ms"
REJECT_REASON = {413: "too_large", 400: "invalid", 415: "invalid", 422: "invalid"}


class ClientDisconnected(Exception):
    """The client went away: its queued items were dropped before compute."""


def request_deadline(request: Request, default_ms: float) -> float:
    raw = request.headers.get(DEADLINE_HEADER)
    if raw is None:
        return time.monotonic() + default_ms / 1000
    try:
        timeout_ms = float(raw)
    except ValueError:
        timeout_ms = -1.0
    if not 0 < timeout_ms < 3_600_000:
        raise InvalidInput(f"{DEADLINE_HEADER} must be a number of milliseconds in (0, 3600000)", field=DEADLINE_HEADER)
    return time.monotonic() + timeout_ms / 1000


async def _wait_for_disconnect(request: Request) -> None:
    # After the body is read, receive() returns only when the client disconnects (or the response ends).
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work):
    """Run `work`; if the client disconnects first, cancel it so queued items are dropped."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # this handler itself was cancelled: never leave the work running
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()  # the client is gone: its items leave their queues before any compute
    await asyncio.wait({task})
    raise ClientDisconnected()


async def prepare_all(request: Request, state: VersionState) -> list[PreparedItem]:
    app = request.app.state
    raw_items = await read_items(request, app.settings)
    bundle, loop = state.bundle, asyncio.get_running_loop()
    jobs = [
        loop.run_in_executor(app.preprocess_pool, prepare_item, raw, bundle.manifest, bundle.tokenizer, app.settings)
        for raw in raw_items
    ]
    return list(await asyncio.gather(*jobs))


async def run_items(state: VersionState, items: list[PreparedItem], deadline: float) -> list[ItemResult]:
    return list(await asyncio.gather(*(state.pipeline.run(item, deadline) for item in items)))


def server_timing(items: list[PreparedItem], results: list[ItemResult], total_s: float) -> str:
    parts = [
        f"decode;dur={max(i.decode_s for i in items) * 1000:.2f}",
        f"queue;dur={max(r.queue_s for r in results) * 1000:.2f}",
        f"infer;dur={max(r.infer_s for r in results) * 1000:.2f}",
        f"total;dur={total_s * 1000:.2f}",
    ]
    components = sorted({name for r in results for name in r.batches})
    for name in components:
        sizes = ",".join(str(r.batches[name].size) for r in results if name in r.batches)
        parts.append(f'batch-{name};desc="{sizes}"')
    return ", ".join(parts)


def record_stages(metrics, model: str, items: list[PreparedItem], post_s: float) -> None:
    for item in items:
        metrics.stage_duration.labels(model, "decode", "+".join(item.modalities)).observe(item.decode_s)
    metrics.stage_duration.labels(model, "postprocess", "all").observe(post_s)


async def handle(
    request: Request,
    model: str,
    version: str | None,
    endpoint: str,
    respond: Callable[[VersionState, list[ItemResult]], dict],
    admit: Callable[[VersionState], None] | None = None,
) -> JSONResponse:
    """Shared by classify and embed; `respond(state, results)` builds the body. `admit(state)` may refuse
    the request for the resolved version (raise a FusionError) before the body is read or anything runs."""
    app, started = request.app.state, time.perf_counter()
    metrics, status, label = app.metrics, "500", "unknown"
    metrics.inflight_requests.inc()
    try:
        state = app.registry.get(model, version)
        label = model
        if admit is not None:
            admit(state)
        deadline = request_deadline(request, app.settings.default_deadline_ms)
        items = await prepare_all(request, state)
        results = await until_disconnect(request, run_items(state, items, deadline))
        post_started = time.perf_counter()
        response = JSONResponse(respond(state, results))
        record_stages(metrics, model, items, time.perf_counter() - post_started)
        response.headers["Server-Timing"] = server_timing(items, results, time.perf_counter() - started)
        status = "200"
        return response
    except FusionError as error:
        status = str(error.status)
        if error.status in REJECT_REASON and label != "unknown":
            metrics.reject(label, REJECT_REASON[error.status])
        raise
    except ClientDisconnected:
        status = "499"
        return JSONResponse(
            {"error": {"type": "client_closed", "message": "client disconnected", "field": None}},
            status_code=499,
        )
    finally:
        metrics.inflight_requests.dec()
        metrics.requests_total.labels(label, endpoint, status).inc()
        metrics.request_duration.labels(label, endpoint).observe(time.perf_counter() - started)
