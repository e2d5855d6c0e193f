"""Multi-process mode's pure parts: the engines' merged view, the follower registry that front-ends keep, the
door's meter over the engines' reports, and how many processes `auto` starts."""

from __future__ import annotations

import orjson
import pytest

from service.admission import EngineMeter
from service.errors import NotReady
from service.frontend.remote.follower import FollowerTable, merge
from service.manifest import manifest_digest, read_manifest, write_manifest
from service.settings import Settings, SettingsError, load_settings
from service.supervisor.processes import process_plan
from tests.bundles import build_bundle


def view(status: str, unloaded=(), loading_done=True, digest: str | None = None) -> dict:
    """An engine's snapshot of tiny/1; `digest`: of the manifest the engine verified (manifest_digest)."""
    fields = {"status": status, "reason": None, "load_seconds": 0.1, "golden_max_error": 0.0, "provider": "CPU",
              "manifest_sha256": digest}  # fmt: skip
    return {"loading_done": loading_done, "unloaded": list(unloaded),
            "models": {"tiny": {"required": True, "versions": {"1": fields}}}}  # fmt: skip


def test_merged_view_takes_each_versions_best_engine():
    merged = merge([view("loading", loading_done=False), view("ready", unloaded=["other"])])
    assert merged["models"]["tiny"]["versions"]["1"]["status"] == "ready"  # served by one engine: served
    assert merged["loading_done"] is False  # until every engine has loaded
    assert merged["unloaded"] == []  # unloaded only where every engine unloaded it


def engine_digest(bundle) -> str:
    """The digest an engine that loaded `bundle` sends (what its snapshot's manifest_sha256 says)."""
    return manifest_digest(read_manifest(bundle / "manifest.json"))


async def test_the_follower_serves_what_the_engine_serves_with_a_light_bundle(tmp_path):
    bundle = build_bundle(tmp_path, "tiny", "1")
    registry = FollowerTable(Settings(model_dir=tmp_path))
    registry.engine_up = True
    await registry.follow(view("ready", digest=engine_digest(bundle)))
    state = registry.get("tiny")
    assert state.status == "ready" and state.bundle.manifest.name == "tiny" and state.bundle.tokenizer is not None
    assert not hasattr(state.bundle, "encoders") and registry.all_ready()  # no onnxruntime session in a front-end
    registry.engine_lost()
    assert not registry.all_ready()
    with pytest.raises(NotReady):
        registry.get("tiny")
    await registry.follow(view("ready", digest=engine_digest(bundle)) | {"models": {}})  # the engine dropped it
    assert "tiny" not in registry.models


async def test_a_version_the_front_end_cannot_read_is_failed_not_served(tmp_path, monkeypatch):
    from service.frontend.remote import follower

    reads, real = [], follower.light_bundle
    monkeypatch.setattr(follower, "light_bundle", lambda *args: reads.append(args) or real(*args))
    registry = FollowerTable(Settings(model_dir=tmp_path))  # no bundle files here
    for _ in range(3):  # three heartbeats
        await registry.follow(view("ready"))
    state = registry.models["tiny"].versions["1"]
    assert state.status == "failed" and "front-end cannot read the bundle" in state.reason
    assert len(reads) == 1  # tried once, not on every heartbeat


@pytest.mark.parametrize("tampered", ["tokenizer.json", "manifest.json"])
async def test_a_file_changed_after_the_engine_verified_it_is_not_served_by_a_front_end(tmp_path, tampered):
    bundle = build_bundle(tmp_path, "tiny", "1")
    digest = engine_digest(bundle)  # the engine has loaded and verified this bundle
    if tampered == "tokenizer.json":  # another vocabulary: the front-end would send the engine other token ids
        vocabulary = orjson.loads((bundle / tampered).read_bytes())
        vocabulary["model"]["vocab"]["cat"], vocabulary["model"]["vocab"]["dog"] = 21, 20
        (bundle / tampered).write_bytes(orjson.dumps(vocabulary))
    else:  # the manifest re-signed for a tokenizer the engine never saw
        manifest = read_manifest(bundle / tampered)
        write_manifest(manifest.model_copy(update={"labels": ["a", "b", "c", "d"]}), bundle / tampered)
    registry = FollowerTable(Settings(model_dir=tmp_path))
    registry.engine_up = True
    await registry.follow(view("ready", digest=digest))
    state = registry.models["tiny"].versions["1"]
    assert state.status == "failed" and state.bundle is None and not registry.all_ready()
    expected = "tokenizer.json: sha256 mismatch" if tampered == "tokenizer.json" else "not the one the engine verified"
    assert "front-end cannot read the bundle" in state.reason and expected in state.reason


def test_the_door_judges_the_engines_whole_load():
    meter = EngineMeter(front_ends=4)
    meter.reports = {"ipc://a": (30, 100.0), "ipc://b": (10, 60.0)}  # the other front-ends' requests
    meter.admitted(), meter.admitted()  # and this one's, counted here whether sent or not
    assert meter.load() == 30 + 10 + 2 and meter.rate(0.0) == 160.0
    assert meter.expected_wait_s(0.0) == pytest.approx(42 / 160)
    for _ in range(100):
        meter.refused(5.0)
    assert meter.retry_after_s(5.0) == 3  # 100 refused here x 4 front-ends at 160/s: ceil(2.5)


def test_auto_is_one_process_without_a_gpu_and_counts_are_validated():
    assert not process_plan(Settings(providers="cpu")).split
    plan = process_plan(Settings(providers="cpu", workers=3))
    assert (plan.front_ends, plan.engines, plan.gpus) == (3, 1, 0)
    with pytest.raises(SettingsError, match="FUSIONSERVE_WORKERS: .*'auto' or a number of processes from 0"):
        load_settings(workers=-1)
    with pytest.raises(SettingsError, match="FUSIONSERVE_ENGINES"):
        load_settings(engines=0)


def test_auto_with_gpus_gives_the_cores_to_front_ends_and_an_engine_to_each_gpu(monkeypatch):
    monkeypatch.setattr("service.supervisor.processes.visible_gpus", lambda providers: 2)
    plan = process_plan(Settings(), cores=16)
    assert (plan.front_ends, plan.engines, plan.gpus) == (8, 2, 2)  # 14 cores left, at most 8 front-ends
    monkeypatch.setattr("service.supervisor.processes.visible_gpus", lambda providers: 1)
    assert process_plan(Settings(), cores=4).front_ends == 3  # the GPU overlay's 4-CPU pod
    assert process_plan(Settings(), cores=1).front_ends == 1
