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

pytestmark = pytest.mark.slow
BODY = {"inputs": [{"text": "a few words to classify"}]}


async def hammer(url: str, until: float, outcomes: list, stop_on_draining: bool = False) -> None:
    """One keep-alive client posting BODY until `until`: (sent, answered, status or error name) per request."""
    async with httpx.AsyncClient(timeout=30) as client:
        while time.monotonic() < until:
            sent = time.monotonic()
            try:
                response = await client.post(url + "/v1/models/tiny/classify", json=BODY)
                outcome = response.status_code
            except httpx.TransportError as error:
                outcome = type(error).__name__
            outcomes.append((sent, time.monotonic(), outcome))
            if stop_on_draining and outcome != 200:
                return  # told to go (503 + Connection: close) or refused at connect: this client is done


async def readiness(url: str, until: float, seen: list) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < until:
            seen.append((time.monotonic(), (await client.get(url + "/readyz")).status_code))
            await asyncio.sleep(0.05)


async def test_a_killed_engine_fails_its_calls_at_once_and_comes_back(tiny_models, tmp_path):
    server = Server(tiny_models, tmp_path / "server.log", workers=2)
    try:
        engine = server.child_pids("engine")[0]
        outcomes, ready, start = [], [], time.monotonic()
        load = [asyncio.create_task(hammer(server.url, start + 3.0, outcomes)) for _ in range(16)]
        watch = asyncio.create_task(readiness(server.url, start + 3.0, ready))
        await asyncio.sleep(1.0)
        os.kill(engine, signal.SIGKILL)
        killed = time.monotonic()
        await asyncio.gather(*load, watch)
        assert {status for _, _, status in outcomes} <= {200, 503}, outcomes  # never a 500, never a reset
        held = [answered - killed for sent, answered, _ in outcomes if sent < killed < answered]
        assert held and max(held) < 1.0, held  # the calls the engine held answered within a second
        assert any(status == 503 for sent, _, status in outcomes if sent > killed)
        assert any(status == 503 for when, status in ready if when > killed), "readiness never said 503"
        server.wait_ready(60)  # the supervisor's new engine loads, verifies and warms the model
        assert httpx.post(server.url + "/v1/models/tiny/classify", json=BODY, timeout=30).status_code == 200
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
        eventually(lambda: victim not in server.child_pids("front-end") and len(server.child_pids("front-end")) == 2,
                   within_s=30)  # fmt: skip
        server.wait_ready(60)
    finally:
        assert server.stop() == 0, server.tail()


async def test_sigterm_under_load_drains_every_front_end_and_loses_nothing(tiny_models, tmp_path):
    server = Server(tiny_models, tmp_path / "server.log", workers=2, drain_grace_s=1.0)
    outcomes, start = [], time.monotonic()
    load = [asyncio.create_task(hammer(server.url, start + 10.0, outcomes, stop_on_draining=True)) for _ in range(32)]
    await asyncio.sleep(1.0)
    server.process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    await asyncio.gather(*load)
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


def eventually(check, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)


def test_a_reload_reaches_every_front_end(models_copy, tmp_path):
    server = Server(models_copy, tmp_path / "server.log", workers=2, model_control="explicit", model_poll_s=0.3)
    try:
        assert default_versions(server) == {"1"}
        build_bundle(models_copy, "tiny", "2")  # the engines' poll finds it, loads it once its files settle
        eventually(lambda: default_versions(server) == {"2"}, within_s=30)
        unloaded = httpx.post(server.url + "/v2/repository/models/tiny/unload", timeout=30)
        assert unloaded.status_code == 200, unloaded.text
        eventually(lambda: default_versions(server) == {404}, within_s=1.0)  # within a few heartbeats
        loaded = httpx.post(server.url + "/v2/repository/models/tiny/load", timeout=60)
        assert loaded.status_code == 200, loaded.text
        eventually(lambda: default_versions(server) == {"2"}, within_s=1.0)
        answer = httpx.post(server.url + "/v1/models/tiny/classify", json=BODY, timeout=30)
        assert answer.status_code == 200 and answer.json()["version"] == "2"
    finally:
        assert server.stop() == 0, server.tail()
