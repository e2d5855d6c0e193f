"""Every HTTP answer carries X-Request-Id: the client's (when it is a plain token) or one made here. Every JSON
error body names it too, in its protocol's shape (v1's and OpenAI's `{"error": {..., "request_id"}}`, V2's
`{"error": "...", "request_id"}`), and the access line of each answer and every log line written while it is
served carry it (service/errors.py REQUEST_ID, service/logs.py; in multi-process mode the engine logs it too).

Done here, in the outermost layer, rather than in each protocol's error shape: the refusals given before any route
(door, body, key, drain) and the routes' own errors all pass through it, so none can miss it."""

from __future__ import annotations

import logging
import time

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import REQUEST_ID, REQUEST_ID_HEADER, request_id_from

HEADER = REQUEST_ID_HEADER.lower().encode()
SCOPE_KEY = "fusionserve.request_id"  # set by the first (outermost) instance; an inner one passes through
access = logging.getLogger("fusionserve.access")


def with_request_id(body: bytes, request_id: str) -> bytes | None:
    """The JSON error `body` with the request id added in its protocol's shape; None when it is not one."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or "error" not in parsed:
        return None
    if isinstance(parsed["error"], dict):
        parsed["error"]["request_id"] = request_id
    else:
        parsed["request_id"] = request_id
    return orjson.dumps(parsed)


class RequestIdMiddleware:
    """Outermost of ours: every answer given below it, refusals before routing included, carries the id, and with
    `access_log` one log line says how it went."""

    def __init__(self, app: ASGIApp, access_log: bool = False):
        self.app, self.access_log = app, access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or SCOPE_KEY in scope:
            return await self.app(scope, receive, send)
        request_id = request_id_from(Headers(scope=scope).get(REQUEST_ID_HEADER))
        scope[SCOPE_KEY] = request_id
        # Not reset on the way out: the app's last-resort 500 handler runs outside this middleware (Starlette's
        # ServerErrorMiddleware) and reads it there; each request runs in its own task, so it goes with it.
        REQUEST_ID.set(request_id)
        answer = _Answer(send, request_id)
        try:
            await self.app(scope, receive, answer.send)
        finally:
            if self.access_log:
                log_access(scope, answer, request_id)


class _Answer:
    """The wrapped `send`: the id header on the start, the id in a JSON error body, the status and bytes noted."""

    def __init__(self, send: Send, request_id: str):
        self.downstream, self.request_id, self.started = send, request_id, time.perf_counter()
        self.status, self.bytes, self.held, self.error_json = 0, 0, None, False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
            self.status = message["status"]
            self.error_json = self.status >= 400 and (b"content-type", b"application/json") in headers
            message = {**message, "headers": [*headers, (HEADER, self.request_id.encode())]}
            if self.error_json:  # held until the body is known: its content-length changes
                self.held = message
                return
        elif message["type"] == "http.response.body":
            if self.held is not None:
                return await self._send_error_body(message)
            self.bytes += len(message.get("body", b""))
        await self.downstream(message)

    async def _send_error_body(self, message: Message) -> None:
        body = (self.held.pop("pending", b"")) + message.get("body", b"")
        if message.get("more_body", False):  # an error body in parts: gather them (they are small)
            self.held["pending"] = body
            return
        start, self.held = self.held, None
        named = with_request_id(body, self.request_id) or body
        headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
        await self.downstream({**start, "headers": [*headers, (b"content-length", str(len(named)).encode())]})
        self.bytes += len(named)
        await self.downstream({"type": "http.response.body", "body": named})


def log_access(scope: Scope, answer: _Answer, request_id: str) -> None:
    """One line per answer. The path without its query string: a query can carry a token or personal data."""
    client = "{}:{}".format(*scope["client"]) if scope.get("client") else None
    model = scope.get("path_params", {}).get("model")
    duration_ms = round((time.perf_counter() - answer.started) * 1000, 2)
    fields = {"method": scope["method"], "path": scope.get("path", ""), "status": answer.status or None,
              "duration_ms": duration_ms, "bytes": answer.bytes, "client": client,
              "model": model, "request_id": request_id}  # fmt: skip
    access.info("%s %s %s %.2f ms %d bytes %s", fields["method"], fields["path"], answer.status or "-",
                duration_ms, answer.bytes, client or "-", extra=fields)  # fmt: skip
