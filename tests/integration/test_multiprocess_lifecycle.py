"""Multi-process mode's lifecycle, on real process trees (FUSIONSERVE_WORKERS=2): an engine killed under load
fails the calls it held with 503 at once (none hangs, none is a 500), readiness says 503 until the supervisor's
new engine is warm, then it serves; SIGTERM under load drains every front-end with nothing lost and exits 0; a
reload (the model poll, the repository API) reaches every front-end."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest

from tests.bundles import build_bundle
from tests.integration.multiprocess import Server
from tests.waiting import wait_until, wait_until_async

pytestmark = pytest.mark.slow
BODY = {"inputs": [{"text": "a few words to classify"}]}
HELD_CALLS_ANSWER_S = 2.0


async def hammer(url: str, stop: asyncio.Event, outcomes: list, served: asyncio.Event,
                 stop_on_draining: bool = False) -> None:  # fmt: skip
    """One keep-alive client posting BODY until `stop`: (sent, answered, status or error name) per request;
    `served` is set at its first 200, so a test acts once every client is really sending, however slow the
    machine (constructing an AsyncClient alone can take 40 ms of CPU)."""
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = await client.post(url + "/v1/models/tiny/classify", json=BODY)
                outcome = response.status_code
            except httpx.TransportError as error:
                outcome = type(error).__name__
            outcomes.append((sent, time.monotonic(), outcome))
            if outcome == 200:
                served.set()
            elif stop_on_draining:
                return  # told to go (503 + Connection: close) or refused at connect: this client is done


async def every_client_served(served: list[asyncio.Event], timeout_s: float = 60.0) -> None:
    waits = asyncio.gather(*(event.wait() for event in served))
    try:
        await asyncio.wait_for(waits, timeout_s)
    except TimeoutError:
        raise AssertionError(
            f"{sum(not e.is_set() for e in served)} of {len(served)} clients never had a 200"
        ) from None


async def readiness(url: str, stop: asyncio.Event, seen: list) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            seen.append((time.monotonic(), (await client.get(url + "/readyz")).status_code))
            await asyncio.sleep(0.05)  # the probe's period, as an orchestrator's would be


async def test_a_killed_engine_fails_its_calls_at_once_and_comes_back(tiny_models, tmp_path):
    server = Server(tiny_models, tmp_path / "server.log", workers=2)
    try:
        engine = server.child_pids("engine")[0]
        outcomes, ready, stop, served = [], [], asyncio.Event(), [asyncio.Event() for _ in range(16)]
        load = [asyncio.create_task(hammer(server.url, stop, outcomes, first)) for first in served]
        watch = asyncio.create_task(readiness(server.url, stop, ready))
        await every_client_served(served)  # so the engine holds calls when it dies
        os.kill(engine, signal.SIGKILL)
        killed = time.monotonic()
        refused_after = lambda: any(status == 503 for sent, _, status in outcomes if sent > killed)  # noqa: E731
        unready_after = lambda: any(status == 503 for when, status in ready if when > killed)  # noqa: E731
        await wait_until_async(lambda: refused_after() and unready_after(), what="a 503 and readiness 503")
        stop.set()
        await asyncio.gather(*load, watch)
        assert {status for _, _, status in outcomes} <= {200, 503}, outcomes  # never a 500, never a reset
        held = [answered - killed for sent, answered, _ in outcomes if sent < killed < answered]
        # the calls the engine held answer at once, not at their 20 s deadline (under 0.11 s on one busy core)
        assert held and max(held) < HELD_CALLS_ANSWER_S, held
        server.wait_ready(60)  # the supervisor's new engine loads, verifies and warms the model
        # each front-end follows the new engine at its own next heartbeat: the one that said ready may not be
        # the one a new connection reaches, so a classify is asked until one is served
        classify = lambda: httpx.post(server.url + "/v1/models/tiny/classify", json=BODY, timeout=30)  # noqa: E731
        wait_until(lambda: classify().status_code == 200, 30, "a classify served by the new engine")
        assert server.child_pids("engine")[0] != engine
    finally:
        assert server.stop() == 0, server.tail()


def test_a_killed_front_end_is_restarted_and_the_other_serves_meanwhile(tiny_models, tmp_path):
    server = Server(tiny_models, tmp_path / "server.log", workers=2)
    try:
        victim = server.child_pids("front-end")[0]
        os.kill(victim, signal.SIGKILL)
        for _ in range(10):  # a fresh connection each: the surviving front-end takes them all
            assert httpx.post(server.url + "/v1/models/tiny/classify", json=BODY, timeout=30).status_code == 200
        front_ends = lambda: server.child_pids("front-end")  # noqa: E731
        wait_until(lambda: victim not in front_ends() and len(front_ends()) == 2, what="a new front-end")
        server.wait_ready(60)
    finally:
        assert server.stop() == 0, server.tail()


async def test_sigterm_under_load_drains_every_front_end_and_loses_nothing(tiny_models, tmp_path):
    server = Server(tiny_models, tmp_path / "server.log", workers=2, drain_grace_s=1.0)
    outcomes, stop, served = [], asyncio.Event(), [asyncio.Event() for _ in range(32)]
    load = [asyncio.create_task(hammer(server.url, stop, outcomes, first, stop_on_draining=True)) for first in served]
    await every_client_served(served)  # the signal comes under load, however long the clients took to start
    server.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*load), 120)  # each client ends when told to go or refused
    assert await asyncio.to_thread(server.process.wait, 60) == 0, server.tail()
    # after the listeners close a new connection is refused (ConnectError: nothing was sent); anything else
    # — a reset, a read error, a 500 — would be a request taken in and lost
    assert {status for _, _, status in outcomes} <= {200, 503, "ConnectError"}, outcomes
    assert sum(status == 200 for _, _, status in outcomes) > 0
    assert any(status == 503 for sent, _, status in outcomes if sent > signalled)  # told to go during the grace


def default_versions(server: Server, connections: int = 8) -> set:
    """/v1/models/tiny's default version as each of several fresh connections (so both front-ends) sees it."""
    seen = set()
    for _ in range(connections):
        response = httpx.get(server.url + "/v1/models/tiny", timeout=10)
        seen.add(response.json()["default_version"] if response.status_code == 200 else response.status_code)
    return seen


def test_a_reload_reaches_every_front_end(models_copy, tmp_path):
    server = Server(models_copy, tmp_path / "server.log", workers=2, model_control="explicit", model_poll_s=0.3)
    try:
        assert default_versions(server) == {"1"}
        build_bundle(models_copy, "tiny", "2")  # the engines' poll finds it, loads it once its files settle
        wait_until(lambda: default_versions(server) == {"2"}, what="v2 on every front-end")
        unloaded = httpx.post(server.url + "/v2/repository/models/tiny/unload", timeout=30)
        assert unloaded.status_code == 200, unloaded.text
        # within a heartbeat (0.25 s) when idle; a front-end that never follows fails however long we wait
        wait_until(lambda: default_versions(server) == {404}, timeout_s=10, what="the unload on every front-end")
        loaded = httpx.post(server.url + "/v2/repository/models/tiny/load", timeout=60)
        assert loaded.status_code == 200, loaded.text
        wait_until(lambda: default_versions(server) == {"2"}, timeout_s=10, what="the load on every front-end")
        answer = httpx.post(server.url + "/v1/models/tiny/classify", json=BODY, timeout=30)
        assert answer.status_code == 200 and answer.json()["version"] == "2"
    finally:
        assert server.stop() == 0, server.tail()
