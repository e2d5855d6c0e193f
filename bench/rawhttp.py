"""A lean HTTP/1.1 keep-alive client for the load generator: pre-built request bytes, httptools parsing.

Why not httpx: on a 2-core box the client shares the cores with the server, and httpx.AsyncClient spent
about as much CPU per request as the server itself (several ms), so it measured the client. This one
writes pre-encoded bytes and parses only the status line and framing (httptools, the parser uvicorn uses)
— an order of magnitude cheaper. `--client httpx` keeps httpx available as a cross-check.

Per request it takes no timer and, while a connection is free, no lock: an asyncio.timeout and a Semaphore per
request were about half of the client's CPU per request. A free slot is a counter; the deadlines of the
requests in flight are checked by one watchdog task a few times per timeout instead (so a timeout fires up to
one tick late: at most 0.5 s, or a twentieth of the timeout).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

import httptools

WATCHDOG_TICKS = 20  # watchdog checks per timeout_s
MAX_TICK_S = 0.5


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
            self.fail(error)
            self.close()

    def on_message_complete(self) -> None:  # httptools callback: the whole response (body included) is in
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.fail(exc or ConnectionResetError("server closed the connection"))

    def fail(self, error: Exception) -> None:
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
        self.free = max_connections  # slots not taken; past them, senders queue in `waiters`
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.idle: list[_Connection] = []
        self.deadlines: dict[_Connection, float] = {}  # the connections with a request in flight
        self.watchdog: asyncio.Task | None = None
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
        async with asyncio.timeout(self.timeout_s):  # a new connection only: rare with keep-alive
            _, connection = await loop.create_connection(_Connection, self.host, self.port)
        self.connections_opened += 1
        return connection, False

    async def send(self, request: bytes) -> str:
        if self.watchdog is None:
            self.watchdog = asyncio.get_running_loop().create_task(self._watch())
        if self.free > 0:
            self.free -= 1
        else:
            await self._wait_for_slot()
        try:
            return str(await self._exchange(request))
        except TimeoutError:
            return "timeout"
        except (OSError, httptools.HttpParserError):
            return "conn_error"
        finally:
            self._release()

    async def _wait_for_slot(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot just as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # _release may have dropped it already (it was done)
                    self.waiters.remove(waiter)
            raise

    def _release(self) -> None:
        """Hand the slot to the first sender still waiting, else free it."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1

    async def _watch(self) -> None:
        """Fail every request past its deadline (TimeoutError) and close its connection."""
        loop, tick = asyncio.get_running_loop(), min(MAX_TICK_S, self.timeout_s / WATCHDOG_TICKS)
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for connection in [c for c, deadline in self.deadlines.items() if deadline <= now]:
                connection.fail(TimeoutError(f"no answer within {self.timeout_s} s"))
                connection.close()

    async def _exchange(self, request: bytes) -> int:
        for attempt in range(2):
            connection, reused = await self._connection()
            answered = False
            self.deadlines[connection] = asyncio.get_running_loop().time() + self.timeout_s
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
                self.deadlines.pop(connection, None)
                if answered and not connection.closed and connection.keep_alive:
                    self.idle.append(connection)
                else:
                    connection.close()
        raise ConnectionResetError("unreachable")

    async def aclose(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watchdog
            self.watchdog = None
        for connection in self.idle:
            connection.close()
        self.idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing
