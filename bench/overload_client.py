"""One closed-loop client with its own keep-alive connection, for the overload phase (bench/overload.py).

Unlike bench/rawhttp.py's pooled client it also returns the Retry-After header and counts connections:
a client whose connection the server closed (a 429 or 503 with `Connection: close`, or an idle timeout)
reconnects before its next request, as a real client would. Response framing is httptools' (uvicorn's).
"""

from __future__ import annotations

import asyncio

import httptools

from bench import rawhttp


class _Connection(rawhttp._Connection):
    """rawhttp's connection that also keeps the answer's Retry-After header."""

    retry_after: str | None = None

    def on_header(self, name: bytes, value: bytes) -> None:  # httptools callback
        if name.lower() == b"retry-after":
            self.retry_after = value.decode("latin-1")

    async def request(self, data: bytes) -> int:
        self.retry_after = None
        return await super().request(data)


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
