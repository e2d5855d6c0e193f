"""One closed-loop client with its own keep-alive connection, for the overload phase (bench/overload.py).

Unlike bench/rawhttp.py's pooled client it also returns the Retry-After header and counts connections:
a client whose connection the server closed (a 429 or 503 with `Connection: close`, or an idle timeout)
reconnects before its next request, as a real client would. Response framing is httptools' (uvicorn's).
"""

from __future__ import annotations

import asyncio

import httptools


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.closed, self.received = False, False
        self.retry_after: str | None = None
        self.keep_alive = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(error)
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:  # httptools callback
        if name.lower() == b"retry-after":
            self.retry_after = value.decode("latin-1")

    def on_message_complete(self) -> None:
        # read keep-alive here: once this callback returns, llhttp resets its state for the next message and
        # should_keep_alive() answers False (which is why bench/rawhttp.py never reuses a connection)
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
        self.received, self.retry_after, self.keep_alive = False, None, False
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class OneConnectionClient:
    """`send(request bytes) -> (status, Retry-After or None)`; status "timeout" / "conn_error" on failure."""

    def __init__(self, host: str, port: int, timeout_s: float):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.connection: _Connection | None = None
        self.connections_opened = 0

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self.host, self.port)
        self.connections_opened += 1
        return connection

    async def send(self, request: bytes) -> tuple[str, str | None]:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._exchange(request)
        except TimeoutError:
            self.close()  # an answer may still come on it: never reuse
            return "timeout", None
        except (OSError, httptools.HttpParserError):
            self.close()
            return "conn_error", None

    async def _exchange(self, request: bytes) -> tuple[str, str | None]:
        for attempt in range(2):
            reused = self.connection is not None and not self.connection.closed
            if not reused:
                self.connection = await self._connect()
            connection = self.connection
            try:
                status = await connection.request(request)
            except ConnectionError:
                self.close()
                if reused and not connection.received and attempt == 0:
                    continue  # the server closed the idle connection as we sent: retry once, on a new one
                raise
            if not connection.keep_alive:
                self.close()  # e.g. 429 + Connection: close: the next request reconnects
            return str(status), connection.retry_after
        raise ConnectionResetError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
