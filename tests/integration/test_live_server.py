"""End-to-end on a real uvicorn server over loopback: disconnects, SIGTERM drain, overload (§7 14, 15, 20)."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
import uuid

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Gate, fast_settings, metric
from tests.integration.live import ThreadedServer, start_process
from tests.waiting import wait_until as wait_for  # the name other modules import from here

pytestmark = pytest.mark.slow
EMBED = "/v1/models/tiny/embed"


def raw_multipart_request(port: int, text: str) -> bytes:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\n{text}\r\n--{boundary}--\r\n').encode()
    head = (
        f"POST {EMBED} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    return head + body


def test_client_disconnect_while_queued_drops_the_item(tiny_models):
    with ThreadedServer(fast_settings(tiny_models, max_batch_size=1)) as live:
        app = live.app
        depth = lambda: metric(app, "fusionserve_queue_depth", model="tiny", component="text")  # noqa: E731
        with Gate(app, "text") as gate:
            blocker = threading.Thread(
                target=httpx.post,
                args=(live.base_url + EMBED,),
                kwargs={"files": {"text": (None, "one two")}, "timeout": 30},
            )
            blocker.start()
            assert gate.entered.wait(10)
            with socket.create_connection(("127.0.0.1", live.port)) as sock:
                sock.sendall(raw_multipart_request(live.port, "three four five"))
                wait_for(lambda: depth() == 1)
            wait_for(lambda: depth() == 0)  # dropped as soon as the server saw the disconnect
            gate.open()
            blocker.join(30)
        assert len(gate.calls) == 1  # the disconnected client's item never reached onnxruntime
        wait_for(lambda: metric(app, "fusionserve_requests_total", model="tiny", endpoint="embed", status="499") == 1)
        assert metric(app, "fusionserve_inflight_requests") == 0


async def _post_many(base_url: str, count: int, **kwargs) -> list[httpx.Response | Exception]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        calls = [client.post(EMBED, files={"text": (None, f"one two {i}")}, **kwargs) for i in range(count)]
        return await asyncio.gather(*calls, return_exceptions=True)


def test_sigterm_under_load_finishes_queued_work_and_exits_0(tiny_models):
    # a long batching window (700 ms): a batch forming behind a computing one may wait for company
    process, base_url = start_process(tiny_models, max_queue_delay_ms=700, max_batch_size=64)
    try:
        results: list = []
        sender = threading.Thread(target=lambda: results.extend(asyncio.run(_post_many(base_url, 20))))
        sender.start()
        # the signal comes once the server has taken in all 20 (one sent after it would rightly get 503 +
        # close); zero-wait batching may have answered some already, the others are queued or computing
        wait_for(lambda: taken_in(base_url) == 20, what="the server to take in all 20 requests")
        process.send_signal(signal.SIGTERM)
        sender.join(30)
        assert process.wait(30) == 0
    finally:
        process.kill()
    statuses = [r.status_code if isinstance(r, httpx.Response) else repr(r) for r in results]
    assert statuses == [200] * 20
    assert "drained" in process.stderr.read()


def taken_in(base_url: str) -> float:
    """Inference requests the server has taken in (answered or in flight), from its /metrics page."""
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(base_url + "/metrics").text)}
    in_flight = sum(s.value for s in families["fusionserve_inflight_requests"].samples)
    return in_flight + sum(s.value for s in families["fusionserve_requests"].samples if s.name.endswith("_total"))


def test_overload_far_beyond_capacity_gives_only_successes_and_429s(tiny_models):
    process, base_url = start_process(tiny_models, max_queued_items=4, max_batch_size=4, max_queue_delay_ms=2)
    try:
        results = asyncio.run(_overload(base_url, workers=48, seconds=4.0))
    finally:
        process.terminate()
        process.wait(30)
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    assert statuses.count(429) > 0 and statuses.count(200) > 0
    # server-side latency (Server-Timing total) of admitted requests is bounded by the small queues; the
    # client-side figure also holds the Python load generator's own queueing (it is the slower party here)
    server_ms = [total for status, _, total in results if status == 200]
    client_s = [seconds for status, seconds, _ in results if status == 200]
    assert np.percentile(server_ms, 99) < 500
    assert np.percentile(client_s, 99) < 10


async def _overload(base_url: str, workers: int, seconds: float) -> list[tuple[int, float, float]]:
    results: list[tuple[int, float, float]] = []
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=workers)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:

        async def worker(index: int) -> None:
            while time.monotonic() < stop_at:
                started = time.monotonic()
                response = await client.post(EMBED, files={"text": (None, f"seven eight {index}")})
                results.append((response.status_code, time.monotonic() - started, server_total_ms(response)))

        await asyncio.gather(*(worker(i) for i in range(workers)))
    return results


def server_total_ms(response: httpx.Response) -> float:
    for part in response.headers.get("server-timing", "").split(", "):
        if part.startswith("total;dur="):
            return float(part.split("=")[1])
    return float("nan")
