"""Live model management under continuous load: with FUSIONSERVE_MODEL_POLL_S set, versions
appear, become the default once verified and warm, and leave by draining — at the cost of no request.

Several client tasks send classify requests all the time through the real app while the model directory
changes under it. The bundles differ by their seeded weights, so an answer's scores prove which version
computed it, not only its `version` field.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.engine.registry import Registry
from service.engine.reload import ModelRepository
from service.frontend import dataplane
from service.preprocess.prepare import prepare_item
from tests.bundle_reference import reference_outputs
from tests.bundles import build_bundle
from tests.integration.conftest import fast_settings, form, serving
from tests.waiting import wait_until_async as wait_until

POLL_S = 0.1
TEXT = "one two three"
LABELS = ["zero", "one", "two", "three"]


def staged(tmp_path: Path, version: str, seed: int, name: str = "tiny") -> Path:
    """A complete bundle built outside the model dir (same filesystem, so os.rename into it is atomic)."""
    return build_bundle(tmp_path / "staging", name, version, seed=seed)


def expected_scores(bundle: Path) -> dict[str, float]:
    probabilities = reference_outputs(bundle, {"text": TEXT})["probabilities"]
    return dict(zip(LABELS, probabilities, strict=True))


def sample(app, name: str, **labels) -> float | None:
    return app.state.context.metrics.registry.get_sample_value(name, {"model": "tiny", **labels})


def status_of(app, version: str, model: str = "tiny") -> str | None:
    entry = app.state.context.registry.models.get(model)
    state = entry.versions.get(version) if entry else None
    return state.status if state else None


def default_version(app, model: str = "tiny") -> str | None:
    entry = app.state.context.registry.models.get(model)
    ready = entry.ready_versions() if entry else []
    return ready[0].version if ready else None


def counted_polls(monkeypatch) -> list[int]:
    """[rescans of the model directory finished so far], kept up to date: a test that checks that something
    does NOT happen on the poll waits for polls to pass, not for a time in which some should have."""
    done = [0]
    original = ModelRepository.poll

    async def counted(self) -> None:
        try:
            await original(self)
        finally:
            done[0] += 1

    monkeypatch.setattr(ModelRepository, "poll", counted)
    return done


async def polls_pass(done: list[int], count: int) -> None:
    target = done[0] + count
    await wait_until(lambda: done[0] >= target, what=f"{count} more polls of the model directory")


@dataclass
class Answer:
    task: int
    started: float
    finished: float
    status: int
    version: str | None
    scores: dict[str, float]


class Load:
    """`tasks` clients, each sending one classify request after another until the block ends."""

    def __init__(self, client, tasks: int = 4, path: str = "/v1/models/tiny/classify"):
        self.client, self.tasks, self.path = client, tasks, path
        self.answers: list[Answer] = []
        self._stop = asyncio.Event()
        self._running: list[asyncio.Task] = []

    async def __aenter__(self) -> Load:
        self._running = [asyncio.create_task(self._client(i)) for i in range(self.tasks)]
        return self

    async def __aexit__(self, *exc) -> None:
        self._stop.set()
        await asyncio.gather(*self._running)

    async def _client(self, task: int) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            response = await self.client.post(self.path, **form(text=TEXT))
            body = response.json()
            scores = {row["label"]: row["score"] for row in body["results"][0]["labels"]} if "results" in body else {}
            self.answers.append(Answer(task, started, time.monotonic(), response.status_code, body.get("version"),
                                       scores))  # fmt: skip

    async def more(self, count: int = 12) -> None:
        """Wait until `count` more answers came back, and every client has had one."""
        target = len(self.answers) + count
        await wait_until(lambda: len(self.answers) >= target, what=f"{count} more answers")
        await wait_until(lambda: len({a.task for a in self.answers}) == self.tasks, what="every client answered")

    def failures(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]


def assert_switched_once(answers: list[Answer], old: str, new: str) -> None:
    """Each client saw `old` then `new`, never back; no request started after `new` first answered got `old`."""
    for task in {a.task for a in answers}:
        versions = [a.version for a in answers if a.task == task]
        switch = versions.index(new)
        assert set(versions[:switch]) == {old} and set(versions[switch:]) == {new}, versions
    first_new = min(a.finished for a in answers if a.version == new)
    late_old = [a for a in answers if a.version == old and a.started > first_new]
    assert not late_old, f"{len(late_old)} requests answered by {old} after {new} served"


def assert_scores_match(answers: list[Answer], bundles: dict[str, dict[str, float]]) -> None:
    for answer in answers:
        for label, score in answer.scores.items():
            assert score == pytest.approx(bundles[answer.version][label], abs=1e-5), answer


async def test_adding_v2_then_removing_v1_under_load_costs_no_request(models_copy, tmp_path):
    scores = {"1": expected_scores(models_copy / "tiny" / "1"), "2": expected_scores(staged(tmp_path, "2", seed=2))}
    assert scores["1"] != pytest.approx(scores["2"], abs=1e-3)  # the versions are told apart by their answers
    async with serving(fast_settings(models_copy, model_poll_s=POLL_S)) as (app, client):
        async with Load(client) as load:
            await load.more()
            os.rename(tmp_path / "staging" / "tiny" / "2", models_copy / "tiny" / "2")
            await wait_until(lambda: default_version(app) == "2", what="v2 to become the default")
            await load.more()
            shutil.rmtree(models_copy / "tiny" / "1")
            await wait_until(lambda: status_of(app, "1") is None, what="v1 to be unloaded")
            await load.more()
        assert load.failures() == []
        assert_switched_once(load.answers, "1", "2")
        assert_scores_match(load.answers, scores)
        provider = "CPUExecutionProvider"
        assert sample(app, "fusionserve_model_info", version="1", provider=provider) is None  # labels gone
        assert sample(app, "fusionserve_model_load_seconds", version="1") is None
        assert sample(app, "fusionserve_model_info", version="2", provider=provider) == 1
        assert 'version="1"' not in (await client.get("/metrics")).text
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and list(ready.json()["models"]["tiny"]) == ["2"]
        described = (await client.get("/v1/models/tiny")).json()
        assert described["default_version"] == "2" and [v["version"] for v in described["versions"]] == ["2"]


async def test_a_non_atomic_copy_is_retried_until_complete(models_copy, tmp_path):
    """The manifest lands first and fusion.onnx in two halves, with pauses longer than a poll: the version
    is tried while incomplete, fails, and loads once the copy ends, all while v1 serves every request."""
    source = staged(tmp_path, "2", seed=2)
    target = models_copy / "tiny" / "2"

    def tried_half_copied() -> bool:
        state = app.state.context.registry.models["tiny"].versions.get("2")
        return state is not None and state.status == "failed" and "fusion.onnx: sha256 mismatch" in state.reason

    async with serving(fast_settings(models_copy, model_poll_s=POLL_S)) as (app, client):
        async with Load(client) as load:
            await load.more()
            target.mkdir()
            shutil.copy(source / "manifest.json", target)
            for path in sorted(p for p in source.iterdir() if p.name not in ("manifest.json", "fusion.onnx")):
                shutil.copy(path, target)
            data = (source / "fusion.onnx").read_bytes()
            with open(target / "fusion.onnx", "wb") as half_copied:
                half_copied.write(data[: len(data) // 2])
                half_copied.flush()
                await wait_until(tried_half_copied, what="the half-copied v2 to be tried and fail")
                assert default_version(app) == "1"
                half_copied.write(data[len(data) // 2 :])
            await wait_until(lambda: default_version(app) == "2", what="the completed v2 to become the default")
            await load.more()
        assert load.failures() == []
        assert_switched_once(load.answers, "1", "2")


async def test_a_tampered_version_never_becomes_default_and_loads_once_fixed(models_copy, tmp_path, monkeypatch):
    attempts: list[str] = []
    original = Registry._prepare

    def counted_prepare(self, directory, state):
        attempts.append(directory.name)
        return original(self, directory, state)

    monkeypatch.setattr(Registry, "_prepare", counted_prepare)
    polls = counted_polls(monkeypatch)
    good = (staged(tmp_path, "3", seed=3) / "fusion.onnx").read_bytes()
    with open(tmp_path / "staging" / "tiny" / "3" / "fusion.onnx", "ab") as tampered:
        tampered.write(b"\0")
    async with serving(fast_settings(models_copy, model_poll_s=POLL_S)) as (app, client):
        async with Load(client) as load:
            os.rename(tmp_path / "staging" / "tiny" / "3", models_copy / "tiny" / "3")
            await wait_until(lambda: status_of(app, "3") == "failed", what="v3 to fail")
            await polls_pass(polls, 5)  # unchanged, it stays failed: not reloaded every poll
            assert attempts.count("3") == 1 and default_version(app) == "1"
            row = next(r for r in await app.state.context.repository.index() if r["version"] == "3")
            assert row["state"] == "UNAVAILABLE" and "fusion.onnx: sha256 mismatch" in row["reason"]
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.post("/v1/models/tiny/classify?version=3", **form(text=TEXT))).status_code == 404
            (models_copy / "tiny" / "3" / "fusion.onnx").write_bytes(good)  # repaired: retried
            await wait_until(lambda: default_version(app) == "3", what="the repaired v3 to become the default")
            await load.more()
        assert load.failures() == []
        assert_switched_once(load.answers, "1", "3")


async def test_a_retired_version_finishes_its_admitted_requests_first(models_copy, tmp_path, monkeypatch):
    """A request admitted on v2 but not yet at its batchers (held in preprocessing) when v2's directory goes:
    v2's batchers keep running until it is answered, by v2; new requests go to v1 meanwhile."""
    entered, release = threading.Event(), threading.Event()

    def held_prepare(*args):
        entered.set()
        release.wait(10)
        return prepare_item(*args)

    os.rename(staged(tmp_path, "2", seed=2), models_copy / "tiny" / "2")
    polls = counted_polls(monkeypatch)
    async with serving(fast_settings(models_copy, model_poll_s=POLL_S)) as (app, client):
        monkeypatch.setattr(dataplane, "prepare_item", held_prepare)
        held = asyncio.create_task(client.post("/v1/models/tiny/classify", **form(text=TEXT)))
        await asyncio.to_thread(entered.wait, 10)
        monkeypatch.setattr(dataplane, "prepare_item", prepare_item)
        shutil.rmtree(models_copy / "tiny" / "2")
        await wait_until(lambda: status_of(app, "2") == "draining", what="v2 to drain")
        assert default_version(app) == "1"  # the default moved before the drain ended
        moved = await client.post("/v1/models/tiny/classify", **form(text=TEXT))
        assert moved.status_code == 200 and moved.json()["version"] == "1"
        refused = await client.post("/v1/models/tiny/classify?version=2", **form(text=TEXT))
        assert refused.status_code == 404 and "its directory is gone" in refused.json()["error"]["message"]
        await polls_pass(polls, 3)
        assert status_of(app, "2") == "draining" and not held.done()  # still waiting for its request
        release.set()
        answer = await held
        assert answer.status_code == 200 and answer.json()["version"] == "2"
        await wait_until(lambda: status_of(app, "2") is None, what="v2 to be unloaded")


async def test_new_model_names_appear_unless_the_configuration_names_others(models_copy, tmp_path, monkeypatch):
    staged(tmp_path, "1", seed=4, name="other")
    polls = counted_polls(monkeypatch)
    async with serving(fast_settings(models_copy, model_poll_s=POLL_S, models=["tiny"])) as (app, client):
        os.rename(tmp_path / "staging" / "other", models_copy / "other")
        await polls_pass(polls, 5)
        assert "other" not in app.state.context.registry.models
        assert (await client.post("/v1/models/other/classify", **form(text=TEXT))).status_code == 404
    shutil.rmtree(models_copy / "other")
    async with serving(fast_settings(models_copy, model_poll_s=POLL_S)) as (app, client):
        staged(tmp_path, "1", seed=4, name="late")
        os.rename(tmp_path / "staging" / "late", models_copy / "late")
        await wait_until(lambda: default_version(app, "late") == "1", what="model 'late' to load")
        assert (await client.get("/readyz")).status_code == 200
        answer = await client.post("/v1/models/late/classify", **form(text=TEXT))
        assert answer.status_code == 200 and answer.json()["model"] == "late"
        shutil.rmtree(models_copy / "late")  # a model directory removed: the name goes
        await wait_until(lambda: "late" not in app.state.context.registry.models, what="model 'late' to go")
        assert (await client.post("/v1/models/late/classify", **form(text=TEXT))).status_code == 404
        assert (await client.get("/readyz")).status_code == 200
