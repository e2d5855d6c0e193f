"""Every HTTP answer carries X-Request-Id: the client's (when it is a plain token) or one made here. A 500 names
it in its message and the log line of the failure carries it, so an operator can match the two
(service/errors.py REQUEST_ID; in multi-process mode the engine logs it too)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import REQUEST_ID, REQUEST_ID_HEADER, request_id_from

HEADER = REQUEST_ID_HEADER.lower().encode()


class RequestIdMiddleware:
    """Outermost of ours: every answer given below it, refusals before routing included, carries the id."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = request_id_from(Headers(scope=scope).get(REQUEST_ID_HEADER))
        # Not reset on the way out: the app's last-resort 500 handler runs outside this middleware (Starlette's
        # ServerErrorMiddleware) and reads it there; each request runs in its own task, so it goes with it.
        REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, request_id.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_id)
