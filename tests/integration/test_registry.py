"""Which versions serve (docs/bundle-format.md, docs/bad-input.md rows 16–18) and readiness around loading."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from pathlib import Path

import pytest

from service.engine.registry import Registry
from service.manifest import sha256_file
from tests.bundles import build_bundle
from tests.integration.conftest import fast_settings, form, metric, serving


def add_version(root: Path, version: str) -> Path:
    return build_bundle(root, "tiny", version, seed=int(version))


def edit_manifest(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


async def served_version(client) -> tuple[str, dict]:
    detail = (await client.get("/v1/models/tiny")).json()
    return detail["default_version"], {v["version"]: v for v in detail["versions"]}


def _tamper(bundle: Path) -> None:
    with open(bundle / "fusion.onnx", "ab") as handle:
        handle.write(b"\0")


def _missing(bundle: Path) -> None:
    (bundle / "text_encoder.onnx").unlink()


def _escape(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d["encoders"]["text"].update(file="../1/text_encoder.onnx"))


def _absolute(bundle: Path) -> None:
    edit_manifest(bundle, lambda d: d["fusion"].update(file=str(bundle / "fusion.onnx")))


def _golden_mismatch(bundle: Path) -> None:
    def change(data):
        data["golden"][0]["outputs"]["fused"][0] += 0.01

    edit_manifest(bundle, change)


def _golden_heads_mismatch(bundle: Path) -> None:
    def change(data):
        data["golden"][0]["outputs"]["modality_probabilities"]["text"][0] += 0.01

    edit_manifest(bundle, change)


def _symlink_escape(bundle: Path) -> None:
    outside = bundle.parent.parent / "elsewhere.onnx"
    (bundle / "fusion.onnx").rename(outside)
    (bundle / "fusion.onnx").symlink_to(outside)


def _external_data(bundle: Path, listed: bool) -> None:
    """fusion.onnx rewritten with its weight matrix in fusion.weights (ONNX external data), its sha256 updated
    and the weights file listed or not."""
    import onnx

    onnx.save(onnx.load(bundle / "fusion.onnx"), bundle / "fusion.onnx", save_as_external_data=True,
              location="fusion.weights", size_threshold=256)  # fmt: skip
    assert (bundle / "fusion.weights").stat().st_size > 0
    files = {"fusion.onnx": sha256_file(bundle / "fusion.onnx")}
    if listed:
        files["fusion.weights"] = sha256_file(bundle / "fusion.weights")
    edit_manifest(bundle, lambda d: d["files"].update(files))


def _unlisted_external_data(bundle: Path) -> None:
    _external_data(bundle, listed=False)


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (_tamper, "sha256 mismatch"),
        (_missing, "text_encoder.onnx is missing"),
        (_escape, "leaves the bundle"),
        (_absolute, "must be relative"),
        (_symlink_escape, "outside the bundle"),
        (_golden_mismatch, "golden examples differ"),
        (_golden_heads_mismatch, "golden examples differ"),
        (_unlisted_external_data, "fusion.onnx keeps tensors in 'fusion.weights', which manifest.json's files"),
    ],
    ids=[
        "tampered",
        "missing-file",
        "path-escape",
        "absolute-path",
        "symlink-escape",
        "golden-mismatch",
        "golden-modality-mismatch",
        "unlisted-external-data",
    ],
)
async def test_broken_new_version_never_replaces_a_working_one(models_copy, breakage, reason):
    breakage(add_version(models_copy, "2"))
    async with serving(fast_settings(models_copy)) as (app, client):
        default, versions = await served_version(client)
        assert default == "1"
        assert versions["2"]["status"] == "failed" and reason in versions["2"]["reason"]
        assert (await client.get("/readyz")).status_code == 200  # the model still serves
        response = await client.post("/v1/models/tiny/classify", **form(text="one two"))
        assert response.status_code == 200 and response.json()["version"] == "1"
        assert (await client.post("/v1/models/tiny/classify?version=2", **form(text="x"))).status_code == 404
        assert metric(app, "fusionserve_model_info", model="tiny", version="2", provider="CPUExecutionProvider") == 0


async def test_newest_good_version_is_default_and_older_stays_addressable(models_copy):
    add_version(models_copy, "10")  # numeric order: 10 > 2 > 1
    add_version(models_copy, "2")
    async with serving(fast_settings(models_copy)) as (_, client):
        default, versions = await served_version(client)
        assert default == "10" and {v["status"] for v in versions.values()} == {"ready"}
        old = await client.post("/v1/models/tiny/classify?version=1", **form(text="one"))
        assert old.json()["version"] == "1"


async def test_cuda_requested_but_unavailable_serves_on_cpu(tiny_models):
    async with serving(fast_settings(tiny_models, providers="cuda")) as (app, client):
        ready = (await client.get("/readyz")).json()
        assert ready["providers_requested"] == "cuda"
        assert ready["models"]["tiny"]["1"]["provider"] == "CPUExecutionProvider"
        assert metric(app, "fusionserve_model_info", model="tiny", version="1", provider="CPUExecutionProvider") == 1
        assert metric(app, "fusionserve_model_load_seconds", model="tiny", version="1") > 0


async def test_readyz_is_503_until_warm_up_finishes(tiny_models, monkeypatch):
    release = threading.Event()
    original = Registry._prepare

    def slow_prepare(self, directory, state):
        release.wait(10)
        return original(self, directory, state)

    monkeypatch.setattr(Registry, "_prepare", slow_prepare)
    async with serving(fast_settings(tiny_models), wait=False) as (app, client):
        early = await client.get("/readyz")
        assert early.status_code == 503
        assert early.json()["models"]["tiny"]["1"]["status"] == "loading"
        assert (await client.get("/healthz")).status_code == 200
        loading = await client.post("/v1/models/tiny/classify", **form(text="one"))
        assert loading.status_code == 503
        release.set()
        await asyncio.wait_for(asyncio.shield(app.state.context.backend.loader), 30)
        assert (await client.get("/readyz")).status_code == 200


async def test_no_models_or_missing_configured_model_is_not_ready(tmp_path, tiny_models):
    async with serving(fast_settings(tmp_path)) as (_, client):
        assert (await client.get("/readyz")).status_code == 503
    async with serving(fast_settings(tiny_models, models=["tiny", "absent"])) as (_, client):
        body = (await client.get("/readyz")).json()
        assert body["ready"] is False and body["models"]["absent"] == {}


async def test_draining_flips_readiness(tiny_models):
    async with serving(fast_settings(tiny_models)) as (app, client):
        app.state.context.draining = True
        response = await client.get("/readyz")
        assert response.status_code == 503 and response.json()["draining"] is True


async def test_a_warm_version_freezes_the_long_lived_heap_and_shutdown_thaws_it(tiny_models):
    """Full collections skip what lives as long as the server (bench/overload.py: gen-2 pauses were the
    429 tail), and a stopped app hands its objects back to the collector (a test process goes on)."""
    import gc

    gc.unfreeze()
    async with serving(fast_settings(tiny_models)) as (_, client):
        assert (await client.get("/readyz")).status_code == 200
        assert gc.get_freeze_count() > 1000  # modules, routes, sessions: the whole warm heap
    assert gc.get_freeze_count() == 0


async def test_external_data_listed_with_its_sha256_loads_and_version_names_are_ascii_numbers(models_copy):
    """A graph's external data file listed in `files` serves; directories whose names are digits only outside
    ASCII (superscript two, Arabic-Indic three) are not versions: they neither abort the start nor load."""
    _external_data(add_version(models_copy, "2"), listed=True)
    for name in ("\u00b2", "\u0663"):  # a copy of version 1 under each name
        shutil.copytree(models_copy / "tiny" / "1", models_copy / "tiny" / name)
    async with serving(fast_settings(models_copy)) as (app, client):
        default, versions = await served_version(client)
        assert default == "2" and set(versions) == {"1", "2"}
        assert {row["version"] for row in await app.state.context.repository.index()} == {"1", "2"}
        response = await client.post("/v1/models/tiny/classify", **form(text="one two"))
        assert response.status_code == 200 and response.json()["version"] == "2"
