"""Drain without loss on SIGTERM (docs/bad-input.md row 15): every request the server took in gets an answer.

Why plain uvicorn loses requests: its shutdown (a) closes the listening socket at once, so the kernel resets
every connection still in the accept queue, and (b) closes at once every keep-alive connection that is
between requests, although the last response on it promised keep-alive. The client's next request is then
either already in the socket buffer, unread (a close with unread data sends an RST), or crosses the FIN on
the wire (the kernel answers it with an RST): the client gets a reset and no response.

The drain here, from SIGTERM (`DrainingServer`, with `DrainMiddleware` in front of the app):
1. grace (`drain_grace_s`): /readyz says 503, the listener stays open, new requests (but the probes and
   /metrics) get 503 + `Connection: close` in the path's protocol shape, counted as the route would count them
   (api/refusals.py: requests_total by endpoint, rejected_total{reason="draining"}), and every response says
   `Connection: close`; admitted requests finish normally. A client that keeps coming is told to go, instead of
   being refused or reset.
2. stop accepting: the loop's server closes, but a duplicate of the listening socket keeps the kernel's
   accept queue alive until what is queued has been accepted here and handed to uvicorn like any other
   connection; then the socket closes and new connections are refused.
3. close keep-alive connections only between requests, and only when nothing is unread in their socket
   buffer; a connection that never sent a request gets up to the grace again to send one.
4. in-flight requests finish within `drain_timeout_s` (counted from SIGTERM; tasks are cancelled past it),
   then the lifespan drains the batchers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.frontend.api.body import CLOSE_HEADERS, discard_body
from service.frontend.api.middleware import OPEN_PATHS, ErrorShapes, route_path
from service.frontend.api.refusals import ERROR_SHAPES, Draining, refuse
from service.frontend.dataplane import DataPlane

log = logging.getLogger("fusionserve")
CLOSE = (b"connection", b"close")
DEFAULT_BODY_TIMEOUT_S = 10.0  # a refused request's body is read (and dropped) for at most this long
POLL_S = 0.05  # how often the last phase looks at the remaining connections


class DrainMiddleware:
    """While `draining()`: requests (but the probes and /metrics) get 503 + `Connection: close`, and every
    response says `Connection: close` so the client reconnects, elsewhere, for its next request. With the app's
    `plane`, a refused inference is counted as its route would count it."""

    def __init__(self, app: ASGIApp, draining: Callable[[], bool], max_body_bytes: int,
                 plane: DataPlane | None = None, shapes: ErrorShapes = ERROR_SHAPES,
                 body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S):  # fmt: skip
        self.app, self.draining, self.max_body_bytes = app, draining, max_body_bytes
        self.plane, self.shapes, self.body_timeout_s = plane, shapes, body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.draining() and route_path(scope) not in OPEN_PATHS:
            # read the body first: uvicorn closes the connection after this response, and a close with
            # request bytes still unread sends an RST, which can destroy the 503 before the client reads it
            await discard_body(receive, self.max_body_bytes, self.body_timeout_s)
            return await refuse(self.plane, scope, receive, send, Draining(dict(CLOSE_HEADERS)), self.shapes)

        async def send_closing(message: Message) -> None:
            # decided when the response starts: a request admitted before SIGTERM still ends its connection
            if message["type"] == "http.response.start" and self.draining():
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"connection" and b"close" in v.lower() for k, v in headers):
                    message = {**message, "headers": [*headers, CLOSE]}
            await send(message)

        await self.app(scope, receive, send_closing)


def has_unread_bytes(transport: asyncio.Transport) -> bool:
    """Whether the peer sent bytes that the event loop has not read yet (a request on its way in)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        with socket.fromfd(sock.fileno(), sock.family, sock.type) as peek:  # a duplicate fd: ours to close
            return bool(peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:  # BlockingIOError: nothing there; anything else: closed or reset, nothing to answer
        return False


def accept_queued(listener: socket.socket) -> list[socket.socket]:
    """Every connection waiting in the listener's accept queue, without blocking."""
    listener.setblocking(False)
    queued = []
    while True:
        try:
            conn, _ = listener.accept()
        except ConnectionAbortedError:  # reset by the client while queued
            continue
        except OSError:  # BlockingIOError: the queue is empty
            return queued
        conn.setblocking(False)
        queued.append(conn)


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose shutdown answers every request it took in (see the module docstring)."""

    def __init__(self, config: uvicorn.Config, context, grace_s: float, timeout_s: float):
        super().__init__(config)  # context: the app's ServerContext (frontend/context.py): we set its `draining`
        self.context, self.grace_s, self.timeout_s = context, grace_s, timeout_s
        self.drain_started: float | None = None

    def handle_exit(self, sig, frame) -> None:
        self.begin_drain()  # /readyz → 503 and the middleware's 503s at once, not at uvicorn's next tick
        super().handle_exit(sig, frame)

    def begin_drain(self) -> None:
        if self.drain_started is None:
            self.drain_started = time.monotonic()
            self.context.draining = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.begin_drain()  # also when uvicorn stops on its own (limit_max_requests)
        deadline = self.drain_started + self.timeout_s
        log.info("draining: answering new requests 503 + Connection: close for %.1f s", self.grace_s)
        while time.monotonic() < min(self.drain_started + self.grace_s, deadline) and not self.force_exit:
            await asyncio.sleep(POLL_S)
        await self._stop_accepting(sockets)
        fresh_until = min(time.monotonic() + self.grace_s, deadline)
        try:
            await asyncio.wait_for(self._close_between_requests(fresh_until), max(deadline - time.monotonic(), 0))
        except TimeoutError:
            log.error("drain timeout (%.1f s) exceeded: cancelling %d request(s)", self.timeout_s, len(self.requests))
            for task in self.requests:
                task.cancel(msg="drain timeout exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()

    @property
    def requests(self) -> set[asyncio.Task]:
        """The ASGI tasks still running, one per request."""
        return self.server_state.tasks

    async def _stop_accepting(self, sockets: list[socket.socket] | None) -> None:
        # the duplicates keep each listening socket, and its accept queue, open while the loop's servers close
        listeners = [socket.fromfd(s.fileno(), s.family, s.type) for srv in self.servers for s in srv.sockets]
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        queued = []
        for listener in listeners:
            with listener:  # accept and close with no await in between: the window for a reset is microseconds
                queued.extend(accept_queued(listener))
        if queued:
            log.info("serving %d connection(s) from the accept queue", len(queued))
        # the same factory as uvicorn's own in Server.startup (it keeps it local)
        factory = functools.partial(
            self.config.http_protocol_class,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        loop = asyncio.get_running_loop()
        for conn in queued:
            await loop.connect_accepted_socket(factory, conn, ssl=self.config.ssl)

    async def _close_between_requests(self, fresh_until: float) -> None:
        while (self.server_state.connections or self.requests) and not self.force_exit:
            for connection in list(self.server_state.connections):
                if connection.transport.is_closing():
                    continue  # closed already, gone from the set at the loop's next turn
                if not self._may_hold_a_request(connection, fresh_until):
                    # uvicorn's own: closes a connection between requests; in a request, its response closes it
                    connection.shutdown()
            await asyncio.sleep(POLL_S)
        for server in self.servers:
            await server.wait_closed()

    @staticmethod
    def _may_hold_a_request(connection, fresh_until: float) -> bool:
        """Between requests, but a request may be on its way: do not close it yet."""
        if not hasattr(connection, "cycle"):  # not an HTTP/1.1 connection (a websocket): uvicorn's rule
            return False
        cycle = connection.cycle
        if cycle is not None and not cycle.response_complete:
            return False  # in a request: shutdown() only makes its response say Connection: close
        if cycle is None and time.monotonic() < fresh_until:
            return True  # connected but nothing parsed yet: its first request is probably being sent
        return has_unread_bytes(connection.transport)
