"""The v1 protocol's request cycle around the data plane: admit (before the body) → read → infer → respond.

Owns what is HTTP here: the deadline header, watching for the client's disconnect, per-request metrics,
Server-Timing, and orjson encoding of the (large, float-heavy) bodies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
from fastapi import Request
from fastapi.responses import Response

from service.api.inputs import read_items
from service.dataplane import ClientDisconnected, Inference
from service.errors import InvalidInput
from service.inference.registry import VersionState

DEADLINE_HEADER = "x-request-timeout-ms"


class OrjsonResponse(Response):
    """JSON via orjson: numpy arrays serialise natively (no .tolist() of every embedding)."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


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


async def wait_for_disconnect(request: Request) -> None:
    # After the body is read, receive() returns only when the client disconnects (or the response ends).
    while (await request.receive())["type"] != "http.disconnect":
        pass


def server_timing(done: Inference, total_s: float) -> str:
    items, results = done.items, done.results
    parts = [
        f"decode;dur={max(i.decode_s for i in items) * 1000:.2f}",
        f"queue;dur={max(r.queue_s for r in results) * 1000:.2f}",
        f"infer;dur={max(r.infer_s for r in results) * 1000:.2f}",
        f"total;dur={total_s * 1000:.2f}",
    ]
    for name in sorted({name for r in results for name in r.batches}):
        sizes = ",".join(str(r.batches[name].size) for r in results if name in r.batches)
        parts.append(f'batch-{name};desc="{sizes}"')
    return ", ".join(parts)


def record_stages(metrics, model: str, done: Inference, post_s: float) -> None:
    for item in done.items:
        metrics.stage_duration.labels(model, "decode", "+".join(item.modalities)).observe(item.decode_s)
    metrics.stage_duration.labels(model, "postprocess", "all").observe(post_s)


async def _infer(request: Request, plane, admitted) -> Inference:
    deadline = request_deadline(request, plane.settings.default_deadline_ms)
    raw_items = await read_items(request, plane.settings)
    watcher = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        return await plane.infer(admitted, raw_items, deadline, cancelled=watcher)
    finally:
        watcher.cancel()


async def handle(
    request: Request,
    model: str,
    version: str | None,
    endpoint: str,
    respond: Callable[[VersionState, Inference], dict],
    explain: bool = False,
) -> Response:
    """Shared by classify and embed; `respond(state, done)` builds the body."""
    plane, started = request.app.state.plane, time.perf_counter()
    try:
        async with plane.track(model, endpoint), plane.admit(model, version, explain=explain) as admitted:
            done = await _infer(request, plane, admitted)  # admitted before the body is read
            post_started = time.perf_counter()
            response = OrjsonResponse(respond(admitted.state, done))
            record_stages(plane.metrics, model, done, time.perf_counter() - post_started)
        response.headers["Server-Timing"] = server_timing(done, time.perf_counter() - started)
        return response
    except ClientDisconnected:
        body = {"error": {"type": "client_closed", "message": "client disconnected", "field": None}}
        return OrjsonResponse(body, status_code=499)
