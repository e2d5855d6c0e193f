"""The v1 protocol's Codec for the data plane's request cycle (service/frontend/cycle.py): the deadline (the one
rule, api/deadline.py), the body (multipart or JSON) read after the door and before admission, the disconnect watch,
and orjson answers with Server-Timing.
Also the HTTP pieces the other HTTP protocols share (disconnect watch, orjson bodies).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
from fastapi import Request
from fastapi.responses import Response

from service.frontend.api.deadline import Deadline, header_timeout_ms
from service.frontend.api.inputs import read_items
from service.frontend.cycle import Admitted, Call, Decoded, Inference
from service.models import VersionState


class OrjsonResponse(Response):
    """JSON via orjson: numpy arrays serialise natively (no .tolist() of every embedding)."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


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

    def __init__(
        self, request: Request, respond: Callable[[VersionState, Inference], dict], options: dict | None = None
    ):
        self.request, self.respond, self.options = request, respond, options or {}
        self.settings = plane_of(request).settings
        self.deadline = Deadline(time.monotonic(), self.settings.default_deadline_ms)  # from arrival

    def check(self) -> None:
        self.deadline.state(header_timeout_ms(self.request.headers))

    async def read_body(self) -> None:
        self.items = await read_items(self.request, self.settings)  # multipart or JSON: no model needed
        for item in self.items:  # the query's options (segment_s, overlap_s) hold for every item; named as given
            item.options, item.options_prefix = dict(self.options), ""

    async def decode(self, admitted: Admitted) -> Decoded:
        return Decoded(self.items, self.deadline.at)

    def watch(self) -> asyncio.Future:
        return disconnect_watch(self.request)

    def encode(self, admitted: Admitted, done: Inference) -> Response:
        return OrjsonResponse(self.respond(admitted.state, done))


async def serve_http(request: Request, call: Call, codec) -> Response:
    """Any HTTP protocol's request through the data plane's cycle; the answer carries Server-Timing."""
    served = await plane_of(request).serve(call, codec)
    served.body.headers["Server-Timing"] = served.server_timing()
    return served.body
