"""Slow bodies against a real uvicorn with `fusionserve serve`'s own settings (frontend.uvicorn_config): a body
must arrive by the request's deadline (408 in each HTTP protocol's shape, the connection closed), a request
counts as load and holds its version only once its body is in, and uvicorn's concurrency cap answers 503
(docs/bad-input.md rows 27–28, docs/design-choices.md "Slow and large bodies")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time

import httpx
import uvicorn

from service.frontend.process import uvicorn_config
from tests.integration.conftest import fast_settings, metric, serving
from tests.integration.live import ThreadedServer
from tests.waiting import wait_until, wait_until_async

ADMIN_KEY = "admin-key-for-unload"
DEADLINE_MS = 5000
MARGIN_S = 2.0  # how late past its deadline a trickler may be cut on a busy 2-core machine
DECLARED = 1000  # Content-Length each trickler promises, of which it sends a byte a second
TRICKLE_PATHS = ("/v1/models/tiny/embed", "/v2/models/tiny/infer", "/v1/embeddings")  # 16 tricklers each
TEXT = {"inputs": [{"text": "an ordinary request"}]}


class FrontEndServer(ThreadedServer):
    """ThreadedServer, but run with the uvicorn configuration `fusionserve serve` uses."""

    def __init__(self, settings):
        super().__init__(settings.model_copy(update={"log_level": "warning"}))
        self.server = uvicorn.Server(uvicorn_config(self.app, self.app.state.context.settings))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def requests_seen(self, since: int) -> int:
        """Requests whose headers arrived: running (an ASGI task each) or answered (uvicorn counts those)."""
        state = self.server.server_state
        return len(state.tasks) + state.total_requests - since


async def trickle(port: int, path: str) -> tuple[float, bytes]:
    """Headers, then one body byte a second until the server answers or closes; (seconds from the headers to
    that moment, what it answered)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {DECLARED}\r\n"
            f"X-Request-Timeout-Ms: {DEADLINE_MS}\r\n\r\n")  # fmt: skip
    writer.write(head.encode())
    await writer.drain()
    started, answer = time.monotonic(), b""
    try:
        for _ in range(DECLARED):
            try:  # the pace of the trickle: a byte whenever a second passes without an answer
                answer = await asyncio.wait_for(reader.read(65536), 1.0)
                break
            except TimeoutError:
                writer.write(b" ")
                await writer.drain()
    except ConnectionError:
        pass  # closed by the server: what we measure
    elapsed = time.monotonic() - started
    if answer:  # the rest of the answer, up to the close (a reset: the server left our last bytes unread)
        with contextlib.suppress(ConnectionError):
            answer += await asyncio.wait_for(reader.read(), 5.0)
    writer.close()
    return elapsed, answer


def answered_status(answer: bytes) -> int | None:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


def error_of(path: str, answer: bytes) -> str:
    """The message of a 408 in the protocol's own shape."""
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    if path.startswith("/v2/"):
        return body["error"]  # KServe V2: {"error": "<message>"}
    error = body["error"]
    assert error.get("field", error.get("param")) == "body", body  # v1's field, OpenAI's param
    assert error.get("type") == "body_timeout" or error.get("code") == "body_timeout", body
    return error["message"]


async def warm_the_meter(client: httpx.AsyncClient, meter) -> None:
    """Serve until the door has a measured drain rate, as a server under steady traffic has."""
    while meter.rate(time.monotonic()) is None:
        answers = await asyncio.gather(*(client.post("/v1/models/tiny/embed", json=TEXT) for _ in range(8)))
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]


async def test_48_trickled_bodies_are_cut_at_their_deadline_and_neither_load_the_door_nor_hold_an_unload(
    tiny_models,
):
    settings = fast_settings(tiny_models, model_control="explicit", admin_key=ADMIN_KEY, max_batch_size=8,
                             max_queue_wait_ms=20)  # fmt: skip
    with FrontEndServer(settings) as live:
        plane = live.app.state.context.plane
        async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as client:
            await warm_the_meter(client, plane.meter("tiny", "1"))
            answered = live.server.server_state.total_requests
            tricklers = [asyncio.ensure_future(trickle(live.port, path)) for path in TRICKLE_PATHS for _ in range(16)]
            await wait_until_async(lambda: live.requests_seen(since=answered) >= 48, what="the 48 tricklers' headers")

            ordinary = [await client.post("/v1/models/tiny/embed", json=TEXT) for _ in range(12)]
            assert [r.status_code for r in ordinary] == [200] * 12, [r.text for r in ordinary if r.status_code != 200]

            started = time.monotonic()
            unload = await client.post("/v2/repository/models/tiny/unload", headers={"X-Admin-Key": ADMIN_KEY})
            unload_s = time.monotonic() - started
            assert unload.status_code == 200, unload.text
            assert not any(t.done() for t in tricklers), "the unload waited for a trickler to be cut"

            results = await asyncio.gather(*tricklers)
    cut_after = [elapsed for elapsed, _ in results]
    print(
        f"unload under 48 tricklers: {unload_s:.2f} s; tricklers cut after {min(cut_after):.2f}–{max(cut_after):.2f} s"
    )
    assert unload_s < DEADLINE_MS / 1000
    for path, (elapsed, answer) in zip([p for p in TRICKLE_PATHS for _ in range(16)], results, strict=True):
        assert DEADLINE_MS / 1000 - 0.1 <= elapsed <= DEADLINE_MS / 1000 + MARGIN_S, (path, elapsed)
        if answer:  # else closed without an answer: also a cut
            assert answered_status(answer) == 408, (path, answer[:200])
            assert b"connection: close" in answer.lower(), answer[:200]
            message = error_of(path, answer)
            assert f"{DEADLINE_MS:g} ms" in message and "body" in message, message
    assert sum(1 for _, answer in results if answer) >= 40  # nearly all read their 408 before the close
    assert metric(live.app, "fusionserve_rejected_total", model="tiny", reason="deadline") >= 1


def test_past_max_connections_uvicorn_answers_503_and_the_held_ones_still_serve(tiny_models):
    with FrontEndServer(fast_settings(tiny_models, max_connections=4)) as live:
        idle = [socket.create_connection(("127.0.0.1", live.port)) for _ in range(3)]
        try:
            wait_until(lambda: len(live.server.server_state.connections) >= 3, what="3 connections accepted")
            refused = httpx.post(live.base_url + "/v1/models/tiny/embed", json=TEXT, timeout=30)
            assert refused.status_code == 503, refused.text  # uvicorn's own plain-text answer
        finally:
            for sock in idle:
                sock.close()
        wait_until(lambda: len(live.server.server_state.connections) == 0, what="the idle connections to close")
        assert httpx.post(live.base_url + "/v1/models/tiny/embed", json=TEXT, timeout=30).status_code == 200


async def test_a_body_completed_after_its_version_was_unloaded_answers_404_not_500(tiny_models):
    """The unload does not wait for a request still sending its body; the body, once in, finds no version."""
    async with serving(fast_settings(tiny_models)) as (app, _):
        body, first_chunk_taken, rest_may_come, sent = json.dumps(TEXT).encode(), asyncio.Event(), asyncio.Event(), {}

        async def receive():
            if not first_chunk_taken.is_set():
                first_chunk_taken.set()
                return {"type": "http.request", "body": body[:10], "more_body": True}
            if not rest_may_come.is_set():
                await rest_may_come.wait()
                rest_may_come.clear()
                return {"type": "http.request", "body": body[10:], "more_body": False}
            await asyncio.Event().wait()  # a connected client: nothing more until it leaves

        async def send(message):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body":
                sent["body"] = sent.get("body", b"") + message.get("body", b"")

        request = asyncio.ensure_future(app(asgi_post("/v1/models/tiny/embed", len(body)), receive, send))
        await first_chunk_taken.wait()
        await asyncio.wait_for(app.state.context.repository.unload("tiny"), 10)  # holds nothing: returns at once
        rest_may_come.set()
        await asyncio.wait_for(request, 10)
    assert sent["status"] == 404, sent
    assert json.loads(sent["body"])["error"]["type"] == "not_found"


def asgi_post(path: str, length: int) -> dict:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(length).encode())]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
            "server": ("test", 80), "client": ("test", 1)}  # fmt: skip
