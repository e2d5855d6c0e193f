"""A lean HTTP/1.1 keep-alive client for the load generator: pre-built request bytes, httptools parsing.

Why not httpx: on a 2-core box the client shares the cores with the server, and httpx.AsyncClient spent
about as much CPU per request as the server itself (several ms), so it measured the client. This one
writes pre-encoded bytes and parses only the status line and framing (httptools, the parser uvicorn uses)
— an order of magnitude cheaper. `--client httpx` keeps httpx available as a cross-check.
"""

from __future__ import annotations

import asyncio

import httptools


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.received = False  # any byte of the current request's answer
        self.keep_alive = False  # read inside on_message_complete: llhttp resets its state right after

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(error)
            self.close()

    def on_message_complete(self) -> None:  # httptools callback: the whole response (body included) is in
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("server closed the connection"))

    def _fail(self, error: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    async def request(self, data: bytes) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        self.received = self.keep_alive = False
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class RawClient:
    """Up to `max_connections` connections to one host:port; `send` returns the status as a string,
    or "timeout" / "conn_error"."""

    def __init__(self, host: str, port: int, max_connections: int, timeout_s: float):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.slots = asyncio.Semaphore(max_connections)
        self.idle: list[_Connection] = []
        self.connections_opened = 0

    def build(self, path: str, body: bytes, headers: dict) -> bytes:
        head = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body

    async def _connection(self) -> tuple[_Connection, bool]:
        """(connection, reused): an idle keep-alive connection if one is still open, else a new one."""
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:  # the server may have closed it while idle (keep-alive timeout)
                return connection, True
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self.host, self.port)
        self.connections_opened += 1
        return connection, False

    async def send(self, request: bytes) -> str:
        async with self.slots:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return str(await self._exchange(request))
            except TimeoutError:
                return "timeout"
            except (OSError, httptools.HttpParserError):
                return "conn_error"

    async def _exchange(self, request: bytes) -> int:
        for attempt in range(2):
            connection, reused = await self._connection()
            answered = False
            try:
                status = await connection.request(request)
                answered = True
                return status
            except ConnectionError:
                # the server closed an idle keep-alive connection just as we sent: not a server error;
                # retry once on a fresh connection (no byte of an answer came back, so nothing was served)
                if reused and not connection.received and attempt == 0:
                    continue
                raise
            finally:  # also on cancellation: a connection with a request in flight is never reused
                if answered and not connection.closed and connection.keep_alive:
                    self.idle.append(connection)
                else:
                    connection.close()
        raise ConnectionResetError("unreachable")

    async def aclose(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing
