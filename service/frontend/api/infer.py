"""The v1 protocol's Codec for the data plane's request cycle (service/frontend/cycle.py): the deadline header, the
body (multipart or JSON) read after the door and before admission, the disconnect watch, and orjson answers
with Server-Timing.
Also the HTTP pieces the other HTTP protocols share (deadline header, disconnect watch, orjson bodies).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
from fastapi import Request
from fastapi.responses import Response

from service.engine.versions import VersionState
from service.errors import InvalidInput
from service.frontend.api.inputs import read_items
from service.frontend.cycle import Admitted, Call, Decoded, Inference

DEADLINE_HEADER = "x-request-timeout-ms"


class OrjsonResponse(Response):
    """JSON via orjson: numpy arrays serialise natively (no .tolist() of every embedding)."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def timeout_ms(raw: str | None, default_ms: float) -> float:
    """The request's X-Request-Timeout-Ms (`default_ms` when absent); InvalidInput naming it when malformed."""
    if raw is None:
        return default_ms
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 3_600_000:
        raise InvalidInput(f"{DEADLINE_HEADER} must be a number of milliseconds in (0, 3600000)", field=DEADLINE_HEADER)
    return value


def request_deadline(request: Request, default_ms: float) -> float:
    return time.monotonic() + timeout_ms(request.headers.get(DEADLINE_HEADER), default_ms) / 1000


async def wait_for_disconnect(request: Request) -> None:
    # After the body is read, receive() returns only when the client disconnects (or the response ends).
    while (await request.receive())["type"] != "http.disconnect":
        pass


def disconnect_watch(request: Request) -> asyncio.Future:
    return asyncio.ensure_future(wait_for_disconnect(request))


def plane_of(request: Request):
    """The app's data plane (service/frontend/context.py)."""
    return request.app.state.context.plane


class V1Codec:
    """classify and embed: one multipart item or JSON items in, `respond(state, done)` out."""

    def __init__(self, request: Request, respond: Callable[[VersionState, Inference], dict]):
        self.request, self.respond = request, respond
        self.settings = plane_of(request).settings

    def check(self) -> None:
        self.deadline = request_deadline(self.request, self.settings.default_deadline_ms)  # from arrival

    async def read_body(self) -> None:
        self.items = await read_items(self.request, self.settings)  # multipart or JSON: no model needed

    async def decode(self, admitted: Admitted) -> Decoded:
        return Decoded(self.items, self.deadline)

    def watch(self) -> asyncio.Future:
        return disconnect_watch(self.request)

    def encode(self, admitted: Admitted, done: Inference) -> Response:
        return OrjsonResponse(self.respond(admitted.state, done))


async def serve_http(request: Request, call: Call, codec) -> Response:
    """Any HTTP protocol's request through the data plane's cycle; the answer carries Server-Timing."""
    served = await plane_of(request).serve(call, codec)
    served.body.headers["Server-Timing"] = served.server_timing()
    return served.body
