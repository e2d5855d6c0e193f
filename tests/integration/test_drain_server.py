"""DrainingServer against plain uvicorn.Server, in process, on the two ways uvicorn's shutdown drops requests.

Deterministic, no load needed: the client's bytes are written from inside the server's own event loop
(blocking socket calls in the test coroutine), so they are in the kernel, unread, when shutdown starts,
which under load happens by chance. Each scenario runs against both servers: plain uvicorn resets the
connection (the root cause, pinned down), DrainingServer answers (the fix).
"""

from __future__ import annotations

import asyncio
import socket
from contextlib import asynccontextmanager
from types import SimpleNamespace

import pytest
import uvicorn

from service.frontend.drain import DrainingServer, DrainMiddleware
from tests.integration.live import free_port

REQUEST = b"POST /v1/echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"


async def hello(scope, receive, send) -> None:
    """The smallest keep-alive app: reads the body, answers 200."""
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@asynccontextmanager
async def started(kind: str):
    """A started server of `kind` ("uvicorn" or "draining", no grace) on a free port, in this event loop."""
    state = SimpleNamespace(draining=False)
    app = DrainMiddleware(hello, lambda: state.draining, max_body_bytes=1024)
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), lifespan="off", log_level="warning")
    config.load()
    server = uvicorn.Server(config) if kind == "uvicorn" else DrainingServer(config, state, grace_s=0, timeout_s=5)
    server.lifespan = config.lifespan_class(config)  # what Server._serve sets before startup
    await server.startup()
    yield server, config.port


def read_response(sock: socket.socket) -> bytes:
    """Everything up to the server's close; raises ConnectionResetError if it resets instead."""
    sock.settimeout(5)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def expect(kind: str, sock: socket.socket) -> None:
    if kind == "uvicorn":
        with pytest.raises(ConnectionResetError):
            read_response(sock)
    else:
        response = read_response(sock)
        assert response.startswith(b"HTTP/1.1 503 ") and b"\r\nconnection: close\r\n" in response.lower()
        assert b'"type": "draining"' in response


@pytest.mark.parametrize("kind", ["uvicorn", "draining"])
async def test_a_request_unread_on_an_idle_keep_alive_connection_is_answered(kind):
    async with started(kind) as (server, port):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(REQUEST)
            first = b""
            while not first.endswith(b"ok"):  # the loop runs while this coroutine waits on the socket
                first += await _recv_async(sock)
            assert first.startswith(b"HTTP/1.1 200 ") and b"connection: close" not in first.lower()
            # keep-alive promised, so the client reuses the connection; the request is still unread when
            # shutdown starts (under load: sent just before the signal, or in the same loop iteration)
            sock.sendall(REQUEST)
            await server.shutdown()
            expect(kind, sock)


@pytest.mark.parametrize("kind", ["uvicorn", "draining"])
async def test_connections_in_the_accept_queue_are_answered(kind):
    async with started(kind) as (server, port):
        # the kernel completes these handshakes; the event loop has not run, so they wait in the accept queue
        queued = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        for sock in queued:
            sock.sendall(REQUEST)
        await server.shutdown()
        for sock in queued:
            with sock:
                expect(kind, sock)


async def _recv_async(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    try:
        return await asyncio.get_running_loop().sock_recv(sock, 65536)
    finally:
        sock.setblocking(True)
