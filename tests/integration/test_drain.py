"""Drain without loss (docs/bad-input.md row 15): SIGTERM under keep-alive load loses no request.

Live: a real `fusionserve serve` process, 32 keep-alive clients in closed loop, SIGTERM mid-load, several
times. Fast: the drain middleware's 503 + `Connection: close` on the real app over ASGI. The two ways plain
uvicorn drops requests are pinned down, deterministically, in test_drain_server.py.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from service.frontend.app import create_app
from service.frontend.drain import DrainMiddleware
from tests.integration.conftest import Gate, fast_settings, form, wait_ready
from tests.integration.live import start_process

EMBED = "/v1/models/tiny/embed"
# the 10 SIGTERMs; plain uvicorn lost requests in 20 of 40 runs: all 10 pass by chance 0.1 %
CLIENTS, RUNS = 32, 10
WARM_RESPONSES = 4 * CLIENTS
# small batches for text and fusion keep the clients out of step, so that at any moment some are between
# requests (uvicorn's "idle") while others wait on a batch; max_batch_size 16 keeps the door admission's
# floor (2 × 16 in flight) above the 32 clients, so no 429
# the door must not refuse these 32 clients: this test is about drain, not admission (test_dataplane.py)
LOAD = dict(max_batch_size=16, component_max_batch_size='{"text": 4, "fusion": 4}', max_queue_delay_ms=2,
            max_queue_wait_ms=600_000)  # fmt: skip


@dataclass
class Outcome:
    started: float  # time.monotonic() when the client began the request
    status: int | None = None
    closes: bool = False  # the response said `Connection: close`
    error: str | None = None  # the exception, when no response came back


async def _one(client: httpx.AsyncClient, index: int) -> Outcome:
    outcome = Outcome(time.monotonic())
    try:
        response = await client.post(EMBED, files={"text": (None, f"one two {index}")})
    except httpx.HTTPError as error:
        outcome.error = repr(error)
        return outcome
    outcome.status = response.status_code
    outcome.closes = response.headers.get("connection", "").lower() == "close"
    return outcome


async def _client_loop(base_url: str, index: int, record: Callable[[Outcome], None], stop_at: float) -> None:
    """One keep-alive client in closed loop; it leaves, as a client behind a load balancer would, once the
    server sends it away (a 503) or stops accepting connections."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=httpx.Limits(max_connections=1)) as client:
        while time.monotonic() < stop_at:
            outcome = await _one(client, index)
            record(outcome)
            if outcome.status == 503 or outcome.error is not None:
                return


async def _load_then_sigterm(process: subprocess.Popen, base_url: str) -> tuple[float, list[Outcome]]:
    """Run the clients; SIGTERM once WARM_RESPONSES are in (every connection reused, whatever the machine's
    speed), at a random phase of the batch cycle. Returns (when the signal was sent, every outcome)."""
    outcomes: list[Outcome] = []
    loop = asyncio.get_running_loop()
    signalled = loop.create_future()

    def send_sigterm() -> None:
        signalled.set_result(time.monotonic())
        process.send_signal(signal.SIGTERM)

    def record(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if len(outcomes) == WARM_RESPONSES:
            loop.call_later(random.uniform(0, 0.05), send_sigterm)

    stop_at = time.monotonic() + 30
    await asyncio.gather(*(_client_loop(base_url, i, record, stop_at) for i in range(CLIENTS)))
    assert signalled.done(), "the load never got going"
    return signalled.result(), outcomes


def _losses(signal_at: float, outcomes: list[Outcome]) -> list[str]:
    """Requests the server took in but never answered, and answers that break the drain contract."""
    losses = []
    for o in outcomes:
        before = o.started < signal_at
        if o.error is not None and (before or "ConnectError" not in o.error):
            # only a refused connection (never accepted, never queued) may go unanswered
            losses.append(f"{o.started - signal_at:+.2f}s: {o.error}")
        elif o.status is not None and o.status not in (200, 503):
            losses.append(f"status {o.status}")
        elif o.status == 503 and not o.closes:
            losses.append("503 without Connection: close")
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2], ids=["one-process", "two-front-ends"])
def test_sigterm_under_keep_alive_load_answers_every_request(tiny_models, workers):
    runs = []
    for _ in range(RUNS):
        process, base_url = start_process(tiny_models, drain_grace_s=0.5, workers=workers, **LOAD)
        try:
            signal_at, outcomes = asyncio.run(_load_then_sigterm(process, base_url))
            code = process.wait(30)
        finally:
            process.kill()
        losses = _losses(signal_at, outcomes)
        runs.append({"exit": code, "lost": len(losses), "lost_before_signal": sum(s[0] == "-" for s in losses),
                     "requests": len(outcomes), "examples": losses[:2]})  # fmt: skip
    assert all(run["exit"] == 0 and run["lost"] == 0 for run in runs), "\n".join(map(str, runs))


async def test_draining_answers_new_requests_503_and_closes_every_connection(tiny_models):
    app = create_app(fast_settings(tiny_models))
    served = DrainMiddleware(app, lambda: app.state.context.draining, max_body_bytes=1 << 20)
    async with app.router.lifespan_context(app):
        await wait_ready(app)
        transport = httpx.ASGITransport(app=served)
        async with httpx.AsyncClient(transport=transport, base_url="http://fusionserve") as client:
            before = await client.post(EMBED, **form(text="one two"))
            with Gate(app, "text") as gate:  # an admitted request, held in onnxruntime across the signal
                admitted = asyncio.ensure_future(client.post(EMBED, **form(text="three four")))
                assert await asyncio.to_thread(gate.entered.wait, 10)
                app.state.context.draining = True
                refused = await client.post(EMBED, **form(text="one two"))
                probes = [await client.get(path) for path in ("/healthz", "/readyz", "/metrics")]
                gate.open()
                admitted = await admitted
    assert before.status_code == 200 and "connection" not in before.headers
    assert refused.status_code == 503 and refused.headers["connection"] == "close"
    assert refused.json()["error"]["type"] == "draining"
    # the admitted request finishes, and its connection closes after it
    assert admitted.status_code == 200 and admitted.headers["connection"] == "close"
    # probes and metrics still answer (a draining server is alive, just not ready), and close too
    assert [p.status_code for p in probes] == [200, 503, 200]
    assert all(p.headers["connection"] == "close" for p in probes)
