"""Pure ASGI middleware: the API key (the admin key: api/model_control.py; the body's limits: api/body.py),
and the error shapes and path helpers every pure-ASGI layer shares.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping

from starlette._utils import get_route_path
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import FusionError, Unauthorized

# path prefix → the protocol's error response (e.g. "/v2/" → {"error": "<message>"}; api/refusals.py) so
# an answer given here, before any route runs, still has the shape its protocol's clients parse
ErrorShapes = Mapping[str, Callable[[FusionError], Response]]

OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready")  # probes stay open
# The pages a person uses (service/frontend/api/pages.py) and what they load need no key: they ask for it and send it
# on their API calls. Not OPEN_PATHS: a draining server refuses them like any request.
PAGE_PATHS = ("/", "/docs", "/docs/oauth2-redirect", "/redoc", "/favicon.ico", "/openapi.json")
PAGE_ASSET_PREFIX = "/static/"
# The repository API's load and unload: they take the admin key, not the API key (api/model_control.py)
CONTROL_PATH = re.compile(r"^/v2/repository/models/(?P<model>[^/]+)/(?P<action>load|unload)$")


async def send_json_error(
    send: Send,
    status: int,
    type_: str,
    message: str,
    field: str | None,
    headers: list[tuple[bytes, bytes]] = (),
) -> None:
    body = json.dumps({"error": {"type": type_, "message": message, "field": field}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def route_path(scope: Scope) -> str:
    """The path the router matches: without the root path a proxy serves us under (uvicorn --root-path puts
    it in front of scope["path"]). Every path check here uses the router's own function, so a middleware and
    the route it guards never disagree about which path a request is for."""
    return get_route_path(scope)


def owns(prefix: str, path: str) -> bool:
    """Whether `path` is `prefix` or under it, segment by segment: "/v2/" owns "/v2" and "/v2/models", not "/v2x"."""
    root = prefix.rstrip("/")
    return path == root or path.startswith(root + "/")


def shape_for(path: str, shapes: ErrorShapes) -> Callable[[FusionError], Response] | None:
    """The error response of the protocol that owns `path` (longest prefix); None = v1's shape."""
    prefixes = sorted((p for p in shapes if owns(p, path)), key=len, reverse=True)
    return shapes[prefixes[0]] if prefixes else None


async def send_error(scope: Scope, receive: Receive, send: Send, error: FusionError, shapes: ErrorShapes) -> None:
    """`error` in the shape of the protocol that owns the path, else v1's."""
    shape = shape_for(route_path(scope), shapes)
    if shape is not None:
        return await shape(error)(scope, receive, send)
    headers = [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send_json_error(send, error.status, error.type, error.message, error.field, headers)


def _keyless(path: str) -> bool:
    open_path = path in OPEN_PATHS or path in PAGE_PATHS or path.startswith(PAGE_ASSET_PREFIX)
    return open_path or CONTROL_PATH.match(path) is not None


def presented_key(scope: Scope, header: bytes) -> bytes:
    """The credential of `Authorization: Bearer <key>`, else of the `header` (e.g. b"x-api-key")."""
    headers = dict(scope.get("headers", ()))
    auth = headers.get(b"authorization", b"")
    if auth[:7].lower() == b"bearer ":
        return auth[7:].strip()
    return headers.get(header, b"")


class ApiKeyMiddleware:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>`; health and metrics stay open for probes, the
    pages for people (they ask for the key); load and unload take the admin key instead (api/model_control.py)."""

    def __init__(self, app: ASGIApp, api_key: str, error_shapes: ErrorShapes | None = None):
        self.app, self.key, self.shapes = app, api_key.encode(), error_shapes or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _keyless(route_path(scope)):
            return await self.app(scope, receive, send)
        if not secrets.compare_digest(presented_key(scope, b"x-api-key"), self.key):
            challenge = {"WWW-Authenticate": "Bearer"}
            error = Unauthorized("missing or wrong API key", field="authorization", headers=challenge)
            return await send_error(scope, receive, send, error, self.shapes)
        await self.app(scope, receive, send)
