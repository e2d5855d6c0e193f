"""Refusal at the door, before FastAPI routes the request (pure ASGI, like middleware.py).

`DataPlane.admit` refuses (429) when a model version's admitted requests would take longer than
MAX_QUEUE_WAIT_MS to drain — but from a route, every refusal first pays for FastAPI's routing, dependency
solving and exception layers. Under 16× overload those refusals were most of the event loop's work, taken
from the requests it had admitted. This middleware asks the cycle's own questions, in the cycle's order — the
deadline header (the codec's check), then `DataPlane.judge` — for the inference paths whose model is in the URL
(v1 classify/embed, KServe V2 REST infer), and answers only the 429, counted by the data plane's tracking and
shaped by the path's protocol (api/refusals.py), exactly as the cycle would. Anything else it leaves to the
route's cycle, which answers and counts it once: a malformed header, an unknown model, a version not ready, a
request the door admits (`admit` judges again there and takes the slot). OpenAI's `model` is in the body, so that
route keeps its own refusal.

A connection that comes back before the Retry-After it was given is held until then (a sleep, no CPU) and
judged again: clients that retry at once cannot turn the server's time into refusals (512 such clients
took 90 % of the goodput; docs/design-choices.md). Clients that wait as told are never held. Keyed by the
connection's address, so behind a proxy that multiplexes many clients over few connections one client's
early retry can delay another's request by up to its Retry-After.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import FusionError, QueueFull
from service.frontend.api.deadline import header_timeout_ms
from service.frontend.api.middleware import ErrorShapes
from service.frontend.api.refusals import ERROR_SHAPES, inference_call, refuse
from service.frontend.cycle import Call
from service.frontend.dataplane import DataPlane


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
    def __init__(self, app: ASGIApp, plane: DataPlane, error_shapes: ErrorShapes = ERROR_SHAPES):
        self.app, self.plane, self.shapes = app, plane, error_shapes
        self.refused = RefusedConnections()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = inference_call(scope)
        if call is None or not call.model:  # not an inference, or OpenAI's (its model is in the body)
            return await self.app(scope, receive, send)
        client = scope.get("client")
        if client is not None and (early := self.refused.early_by_s(client, time.monotonic())) > 0:
            await asyncio.sleep(early)  # came back before its Retry-After: wait it out, then be judged
        refusal = self.refusal(scope, call)
        if refusal is None:
            return await self.app(scope, receive, send)
        if client is not None:
            self.refused.refused(client, time.monotonic(), refusal.headers.get("Retry-After", "1"))
        await refuse(self.plane, scope, receive, send, refusal, self.shapes)

    def refusal(self, scope: Scope, call: Call) -> QueueFull | None:
        """The 429 the route's cycle would answer now; None for anything else (the cycle answers it)."""
        try:
            header_timeout_ms(Headers(scope=scope))  # the cycle's check comes first: a bad header is its 422
            self.plane.judge(call.model, call.version, explain=call.explain)
        except QueueFull as error:
            return error
        except FusionError:
            return None
        return None
