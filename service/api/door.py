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
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.middleware import ErrorShapes, send_error
from service.dataplane import DataPlane
from service.errors import QueueFull

V1_INFER = re.compile(r"^/v1/models/([^/]+)/(classify|embed)$")
V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
V2_ENDPOINT = "v2_infer"  # the endpoint label service/api/v2/rest.py counts under


def inference_target(path: str, query_string: bytes) -> tuple[str, str | None, str] | None:
    """(model, version or None, endpoint label) of an inference POST whose model is in the URL."""
    if match := V1_INFER.match(path):
        version = parse_qs(query_string.decode("latin-1")).get("version", [None])[0] if query_string else None
        return match.group(1), version, match.group(2)
    if match := V2_INFER.match(path):
        return match.group(1), match.group(2), V2_ENDPOINT
    return None


class DoorMiddleware:
    def __init__(self, app: ASGIApp, plane: DataPlane, error_shapes: ErrorShapes | None = None):
        self.app, self.plane, self.shapes = app, plane, error_shapes or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = None
        if scope["type"] == "http" and scope["method"] == "POST":
            target = inference_target(scope["path"], scope.get("query_string", b""))
        if target is not None:
            model, version, endpoint = target
            try:
                self.plane.check_door(model, version)
            except QueueFull as error:
                with contextlib.suppress(QueueFull):  # counted exactly as a route's refusal is
                    async with self.plane.track(model, endpoint):
                        raise error
                return await send_error(scope, receive, send, error, self.shapes)
        await self.app(scope, receive, send)
