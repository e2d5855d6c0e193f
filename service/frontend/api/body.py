"""Every HTTP request body, in one pure-ASGI place that wraps receive() once (docs/bad-input.md rows 1, 27–29):

- size: over FUSIONSERVE_MAX_UPLOAD_BYTES is 413 — by Content-Length before a byte is read, else at the first
  chunk past the limit;
- time: the body must be in by the request's deadline (X-Request-Timeout-Ms, else
  FUSIONSERVE_DEFAULT_DEADLINE_MS), else 408 and the connection closes: a client trickling its body holds a
  connection and a task, never past its deadline;
- memory: its bytes are reserved in the process's body budget (service/frontend/body_budget.py) before they are
  buffered — by Content-Length up front, chunk by chunk otherwise — and released when the request ends;
  over the budget is 503 + Retry-After.

Raised from receive() inside a route, an error reaches the app's FusionError handler and leaves in the path's
protocol shape; answered here (before routing), it is shaped and counted as a route's is (api/refusals.py).
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import FusionError, InvalidInput, PayloadTooLarge
from service.frontend.api.deadline import DEADLINE_HEADER, header_timeout_ms
from service.frontend.api.middleware import ErrorShapes
from service.frontend.api.refusals import ERROR_SHAPES, refuse
from service.frontend.body_budget import BodyBudgetFull, Reservation
from service.frontend.dataplane import DataPlane

CLOSE_HEADERS = {"Connection": "close"}  # the connection ends with this answer


class BodyTimeout(FusionError):
    """The request's body did not arrive by its deadline."""

    status, type = 408, "body_timeout"


def body_timeout_ms(headers: dict[bytes, bytes], default_ms: float) -> float:
    """How long the body may take: the request's deadline (api/deadline.py; V2's `timeout` parameter is in the body).
    A malformed header falls back to the default here; the route answers it with 422."""
    raw = headers.get(DEADLINE_HEADER.encode())
    try:
        stated = header_timeout_ms({} if raw is None else {DEADLINE_HEADER: raw.decode("latin-1")})
    except InvalidInput:
        return default_ms
    return default_ms if stated is None else stated


def declared_length(headers: dict[bytes, bytes]) -> int | None:
    declared = headers.get(b"content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


class BodyReader:
    """The receive() the app sees: size, deadline and budget checked on every chunk until the body is in."""

    def __init__(self, receive: Receive, max_bytes: int, timeout_ms: float, reservation: Reservation, chunked: bool):
        self.inner, self.max_bytes, self.timeout_ms = receive, max_bytes, timeout_ms
        self.deadline = asyncio.get_running_loop().time() + timeout_ms / 1000  # the loop's clock: timeout_at's
        self.reservation, self.chunked, self.received, self.complete = reservation, chunked, 0, False

    async def receive(self) -> Message:
        if self.complete:  # the body is in: what follows is a disconnect, unbounded in time
            return await self.inner()
        try:
            # a deadline already past still returns a chunk uvicorn has buffered (no suspension, no timeout)
            async with asyncio.timeout_at(self.deadline):
                message = await self.inner()
        except TimeoutError:
            raise BodyTimeout(
                f"the request body did not arrive within the request's deadline of {self.timeout_ms:g} ms "
                f"({DEADLINE_HEADER} or FUSIONSERVE_DEFAULT_DEADLINE_MS)",
                field="body",
                headers=dict(CLOSE_HEADERS),
            ) from None
        if message["type"] == "http.request":
            self.complete = not message.get("more_body", False)
            await self._count(len(message.get("body", b"")))
        return message

    async def _count(self, size: int) -> None:
        self.received += size
        if self.received > self.max_bytes:  # chunked upload: stop at the first chunk past the limit
            raise PayloadTooLarge(too_large_message(self.max_bytes), headers=dict(CLOSE_HEADERS))
        if not self.chunked:
            return  # reserved by Content-Length
        try:
            self.reservation.take(size)
        except BodyBudgetFull as error:
            # nothing of this chunk is kept; the rest is read and dropped (bounded by the limit and the
            # deadline) so that closing the connection does not reset it before the client reads the 503
            if not self.complete:
                remaining_s = max(self.deadline - asyncio.get_running_loop().time(), 0)
                await discard_body(self.inner, self.max_bytes - self.received, remaining_s)
            error.headers.update(CLOSE_HEADERS)
            raise


def too_large_message(max_bytes: int) -> str:
    return f"request body exceeds the limit of {max_bytes} bytes (FUSIONSERVE_MAX_UPLOAD_BYTES)"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, plane: DataPlane, error_shapes: ErrorShapes = ERROR_SHAPES):
        self.app, self.plane, self.shapes = app, plane, error_shapes
        self.max_bytes, self.default_ms = plane.settings.max_upload_bytes, plane.settings.default_deadline_ms

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", ()))
        timeout_ms, declared = body_timeout_ms(headers, self.default_ms), declared_length(headers)
        if declared is not None and declared > self.max_bytes:  # refuse before reading a byte of the body
            error = PayloadTooLarge(too_large_message(self.max_bytes), headers=dict(CLOSE_HEADERS))
            return await self._refuse(scope, receive, send, error)
        reservation = Reservation(self.plane.body_budget)
        try:
            if declared:
                reservation.take(declared)
        except BodyBudgetFull as error:
            # read (and drop) the body first: a close with request bytes unread resets the connection, and
            # the client would see a reset instead of the 503 it can retry on
            await discard_body(receive, self.max_bytes, timeout_ms / 1000)
            error.headers.update(CLOSE_HEADERS)
            return await self._refuse(scope, receive, send, error)
        reader = BodyReader(receive, self.max_bytes, timeout_ms, reservation, chunked=declared is None)
        try:
            await self.app(scope, reader.receive, send)
        finally:
            reservation.close()

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, error: FusionError) -> None:
        """Answer before routing, counted as the route's own answer would be (requests_total, rejected_total)."""
        await refuse(self.plane, scope, receive, send, error, self.shapes)


async def discard_body(receive: Receive, max_bytes: int, timeout_s: float) -> None:
    """Read and drop up to `max_bytes` of the body, for `timeout_s` at most."""
    read = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while read <= max_bytes:
                message = await receive()
                read += len(message.get("body", b""))
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
