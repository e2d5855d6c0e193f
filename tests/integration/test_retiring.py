"""Retiring a version (an unload, or its directory gone): its onnxruntime sessions are freed once the unload
answers, memory stays put over unload/load cycles, and a request that holds the version past the draining
deadline gets a 503 naming the unload instead of keeping the unload (and the next load) waiting."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from pathlib import Path

import httpx
import pytest

from service.frontend import dataplane
from service.preprocess.prepare import prepare_item
from tests import media
from tests.bundles import build_bundle
from tests.integration.conftest import fast_settings, serving
from tests.integration.multiprocess import Server
from tests.integration.test_live_reload import TEXT, status_of, wait_until

ADMIN_KEY = "retiring-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
REQUESTS = ({"text": (None, TEXT)}, {"text": (None, TEXT), "image": ("a.png", media.png(), "image/png")})


def explicit(models: Path, **overrides):
    return fast_settings(models, model_control="explicit", admin_key=ADMIN_KEY, **overrides)


def sessions_of(state) -> list[weakref.ref]:
    """Weak references to a version's onnxruntime models (runtime.OrtModel), one per component."""
    return [weakref.ref(c.model) for c in [*state.bundle.encoders.values(), state.bundle.fusion]]


async def test_an_unloaded_versions_sessions_are_freed_when_the_unload_answers(models_copy):
    async with serving(explicit(models_copy)) as (app, client):
        for cycle in range(2):
            for files in REQUESTS:  # text alone fuses inside its encoder's call; text + image in fusion's batcher
                assert (await client.post("/v1/models/tiny/classify", files=files)).status_code == 200
            state = app.state.context.registry.get("tiny")  # held on purpose, as a late request would
            sessions = sessions_of(state)
            unload = await client.post("/v2/repository/models/tiny/unload", headers=ADMIN)
            assert unload.status_code == 200
            alive = [ref().path.name for ref in sessions if ref() is not None]
            assert alive == [], f"cycle {cycle}: alive after the unload answered: {alive}"
            assert state.status == "draining" and state.bundle.manifest.name == "tiny"  # a holder reads it still
            assert (await client.post("/v2/repository/models/tiny/load", headers=ADMIN)).status_code == 200


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
def test_ten_unload_load_cycles_keep_rss_within_one_load(tmp_path):
    """A server process, a text bundle with ~38 MB of weights loaded, unloaded and loaded again through the
    repository API: RSS after ten loads stays within what the first load added."""
    models = tmp_path / "models"
    build_bundle(models, "tiny", "1", modalities=("text",))  # served from the start: the server is ready
    build_bundle(tmp_path / "staging", "big", "1", modalities=("text",), dim=3072)
    server = Server(models, tmp_path / "server.log", workers=0, model_control="explicit", admin_key=ADMIN_KEY)
    try:
        os.rename(tmp_path / "staging" / "big", models / "big")
        before, after = rss_mb(server.process.pid), []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for cycle in range(10):
                if cycle:
                    assert client.post("/v2/repository/models/big/unload", headers=ADMIN).status_code == 200
                assert client.post("/v2/repository/models/big/load", headers=ADMIN).status_code == 200
                assert client.post("/v1/models/big/classify", files=REQUESTS[0]).status_code == 200
                after.append(rss_mb(server.process.pid))
    finally:
        server.stop()
    one_load = after[0] - before
    assert after[-1] - after[0] < one_load, f"RSS {before:.0f} MB, then after each load {[round(r) for r in after]}"


class HeldPreprocessing:
    """The next request admitted stops in preprocessing (holding its version) until `release`."""

    def __init__(self, monkeypatch):
        self.entered, self.released = threading.Event(), threading.Event()
        self._monkeypatch = monkeypatch

        def held_prepare(*args):
            self.entered.set()
            self.released.wait(30)
            return prepare_item(*args)

        monkeypatch.setattr(dataplane, "prepare_item", held_prepare)

    async def holding(self, client: httpx.AsyncClient) -> asyncio.Task:
        held = asyncio.create_task(client.post("/v1/models/tiny/classify", files=REQUESTS[0]))
        await asyncio.to_thread(self.entered.wait, 30)
        self._monkeypatch.setattr(dataplane, "prepare_item", prepare_item)  # others pass
        return held

    def release(self) -> None:
        self.released.set()


async def test_an_unload_answers_at_its_draining_deadline_and_the_holder_gets_503(models_copy, monkeypatch):
    async with serving(explicit(models_copy, unload_drain_s=0.5)) as (app, client):
        held_request = HeldPreprocessing(monkeypatch)
        held = await held_request.holding(client)
        started = time.monotonic()
        unload = await asyncio.wait_for(client.post("/v2/repository/models/tiny/unload", headers=ADMIN), 20)
        took_s = time.monotonic() - started
        assert unload.status_code == 200 and 0.5 <= took_s < 10, took_s
        assert not held.done()  # still in preprocessing: its version stopped under it
        held_request.release()
        late = await held
        assert late.status_code == 503, late.text
        message = late.json()["error"]["message"]
        assert "model 'tiny' version '1' was unloaded (unloaded on request)" in message
        assert (await client.post("/v1/models/tiny/classify", files=REQUESTS[0])).status_code == 404
        assert (await client.post("/v2/repository/models/tiny/load", headers=ADMIN)).status_code == 200
        assert (await client.post("/v1/models/tiny/classify", files=REQUESTS[0])).status_code == 200


async def test_a_draining_unload_never_holds_the_repository_lock(models_copy, monkeypatch):
    """A load waiting for a draining unload of its model waits outside the lock: the poll of every model (and
    any other load or unload) goes on meanwhile."""
    async with serving(explicit(models_copy, unload_drain_s=60)) as (app, client):
        repository = app.state.context.repository
        held_request = HeldPreprocessing(monkeypatch)
        held = await held_request.holding(client)
        unload = asyncio.create_task(client.post("/v2/repository/models/tiny/unload", headers=ADMIN))
        await wait_until(lambda: status_of(app, "1") == "draining", what="v1 to drain")
        waiting, finish_retiring = asyncio.Event(), repository._finish_retiring

        async def noted(name: str) -> None:
            waiting.set()
            await finish_retiring(name)

        monkeypatch.setattr(repository, "_finish_retiring", noted)
        load = asyncio.create_task(client.post("/v2/repository/models/tiny/load", headers=ADMIN))
        await asyncio.wait_for(waiting.wait(), 20)  # the load waits for the drain now
        await asyncio.wait_for(repository.poll(), 10)  # and a rescan of every model is not stuck behind it
        assert not unload.done() and not load.done() and status_of(app, "1") == "draining"
        held_request.release()
        assert (await held).status_code == 200  # drained in time: it finished on its own version
        assert (await unload).status_code == 200 and (await load).status_code == 200
        assert (await client.post("/v1/models/tiny/classify", files=REQUESTS[0])).status_code == 200
