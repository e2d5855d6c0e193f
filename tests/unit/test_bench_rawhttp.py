"""bench/rawhttp.py's load-generator client against a tiny in-process HTTP server: keep-alive reuse, the
watchdog's timeouts, and the connection slots (queueing past them, a cancelled waiter giving its turn back)."""

from __future__ import annotations

import asyncio
import contextlib

from bench.rawhttp import RawClient
from tests.waiting import wait_until_async

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}"


class Server(asyncio.Protocol):
    """Answers every request at once, or (hold=True) only when `release()` is called."""

    def __init__(self, hold: bool, held: list) -> None:
        self.hold, self.held = hold, held

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.hold:
            self.held.append(self.transport)
        else:
            self.transport.write(ANSWER)


@contextlib.asynccontextmanager
async def serving(hold: bool = False):
    held: list = []
    server = await asyncio.get_running_loop().create_server(lambda: Server(hold, held), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], held
    finally:
        server.close()
        for transport in held:
            transport.close()


def request(client: RawClient) -> bytes:
    return client.build("/v1/models/m/classify", b'{"inputs": [{"text": "hi"}]}', {"content-type": "application/json"})


async def test_answers_reuse_one_keep_alive_connection():
    async with serving() as (port, _):
        client = RawClient("127.0.0.1", port, max_connections=4, timeout_s=5.0)
        assert [await client.send(request(client)) for _ in range(5)] == ["200"] * 5
        assert client.connections_opened == 1 and client.free == 4
        await client.aclose()


async def test_a_request_without_an_answer_times_out_and_its_connection_is_dropped():
    async with serving(hold=True) as (port, held):
        client = RawClient("127.0.0.1", port, max_connections=2, timeout_s=0.2)
        assert await client.send(request(client)) == "timeout"
        assert len(held) == 1 and client.deadlines == {} and client.idle == [] and client.free == 2
        await client.aclose()


async def test_senders_past_the_slots_wait_and_a_cancelled_one_gives_its_turn_back():
    async with serving(hold=True) as (port, held):
        client = RawClient("127.0.0.1", port, max_connections=1, timeout_s=30.0)
        first = asyncio.create_task(client.send(request(client)))
        await wait_until_async(lambda: len(held) == 1, what="the first request at the server")
        second = asyncio.create_task(client.send(request(client)))
        third = asyncio.create_task(client.send(request(client)))
        await wait_until_async(lambda: len(client.waiters) == 2, what="two senders queued for the one slot")
        second.cancel()
        held[0].write(ANSWER)
        assert await first == "200"
        await wait_until_async(lambda: len(held) == 2, what="the third request at the server")
        held[1].write(ANSWER)
        assert await third == "200"
        assert second.cancelled() and client.free == 1 and not client.waiters
        assert client.connections_opened == 1  # the one slot's connection, kept alive
        await client.aclose()
