"""Refusal at the door, before FastAPI routes the request (pure ASGI, like middleware.py).

`DataPlane.admit` refuses (429) when a model version's admitted requests would take longer than
MAX_QUEUE_WAIT_MS to drain — but from a route, every refusal first pays for FastAPI's routing, dependency
solving and exception layers. Under 16× overload those refusals were most of the event loop's work, taken
from the requests it had admitted. This middleware asks the same question for the inference paths whose
model is in the URL (v1 classify/embed, KServe V2 REST infer) and answers 429 in the path's protocol shape,
with the same accounting (requests_total by endpoint, rejected_total, request duration) as a route's
refusal. Anything else it leaves to the route: an unknown model, a version not ready, a request the door
admits (`admit` checks again there and takes the slot). OpenAI's `model` is in the body, so that route
keeps its own refusal.

A connection that comes back before the Retry-After it was given is held until then (a sleep, no CPU) and
judged again: clients that retry at once cannot turn the server's time into refusals (512 such clients
took 90 % of the goodput; docs/design-choices.md). Clients that wait as told are never held. Keyed by the
connection's address, so behind a proxy that multiplexes many clients over few connections one client's
early retry can delay another's request by up to its Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import OrderedDict
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import QueueFull
from service.frontend.api.middleware import ErrorShapes, route_path, send_error
from service.frontend.dataplane import DataPlane

V1_INFER = re.compile(r"^/v1/models/([^/]+)/(classify|embed)$")
V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
V2_ENDPOINT = "v2_infer"  # the endpoint label service/frontend/api/v2/rest.py counts under


def inference_target(path: str, query_string: bytes) -> tuple[str, str | None, str] | None:
    """(model, version or None, endpoint label) of an inference POST whose model is in the URL."""
    if match := V1_INFER.match(path):
        version = parse_qs(query_string.decode("latin-1")).get("version", [None])[0] if query_string else None
        return match.group(1), version, match.group(2)
    if match := V2_INFER.match(path):
        return match.group(1), match.group(2), V2_ENDPOINT
    return None


class RefusedConnections:
    """When each recently refused connection was told it may retry (bounded: the oldest are forgotten)."""

    def __init__(self, limit: int = 10_000):
        self.limit, self.retry_at = limit, OrderedDict()

    def early_by_s(self, client, now: float) -> float:
        return max(0.0, self.retry_at.get(client, now) - now)

    def refused(self, client, now: float, retry_after_s: str) -> None:
        self.retry_at[client] = now + float(retry_after_s)
        self.retry_at.move_to_end(client)
        if len(self.retry_at) > self.limit:
            self.retry_at.popitem(last=False)


class DoorMiddleware:
    def __init__(self, app: ASGIApp, plane: DataPlane, error_shapes: ErrorShapes | None = None):
        self.app, self.plane, self.shapes = app, plane, error_shapes or {}
        self.refused = RefusedConnections()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = None
        if scope["type"] == "http" and scope["method"] == "POST":
            target = inference_target(route_path(scope), scope.get("query_string", b""))
        if target is None:
            return await self.app(scope, receive, send)
        model, version, endpoint = target
        client = scope.get("client")
        if client is not None and (early := self.refused.early_by_s(client, time.monotonic())) > 0:
            await asyncio.sleep(early)  # came back before its Retry-After: wait it out, then be judged
        try:
            self.plane.check_door(model, version)
        except QueueFull as error:
            with contextlib.suppress(QueueFull):  # counted exactly as a route's refusal is
                async with self.plane.track(model, endpoint):
                    raise error
            if client is not None:
                self.refused.refused(client, time.monotonic(), error.headers.get("Retry-After", "1"))
            return await send_error(scope, receive, send, error, self.shapes)
        await self.app(scope, receive, send)
