"""Triton's model repository extension: index, load and unload, proven with the real
`tritonclient.http` against a real server on loopback. The index is behind the API key when one is set; load
and unload need FUSIONSERVE_MODEL_CONTROL=explicit and then the admin key (tests/integration/test_model_control.py
covers the refusals)."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading

import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from service.frontend import dataplane
from service.preprocess.prepare import prepare_item
from tests.integration.conftest import fast_settings, form, serving
from tests.integration.live import ThreadedServer
from tests.integration.test_live_reload import TEXT, default_version, staged, status_of
from tests.waiting import wait_until_async

KEY = "s3cret-repository-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
ADMIN_KEY = "s3cret-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def by_version(rows: list[dict], model: str = "tiny") -> dict[str, dict]:
    return {row["version"]: row for row in rows if row["name"] == model}


@pytest.fixture
def live(models_copy, tmp_path):
    """A server with the API and admin keys set, polling off: only the repository API changes what is served."""
    os.rename(staged(tmp_path, "2", seed=2), models_copy / "tiny" / "2")
    shutil.rmtree(models_copy / "tiny" / "1")  # v2 only at start; v1 comes back through load
    settings = fast_settings(models_copy, api_key=KEY, model_control="explicit", admin_key=ADMIN_KEY)
    with ThreadedServer(settings) as server:
        yield server, triton.InferenceServerClient(f"127.0.0.1:{server.port}"), models_copy


def test_tritonclient_index_needs_the_api_key_and_load_unload_the_admin_key(live, tiny_models):
    server, client, models = live
    with pytest.raises(InferenceServerException) as refused:
        client.get_model_repository_index()
    assert refused.value.status() == "401"
    for call in (lambda **kw: client.load_model("tiny", **kw), lambda **kw: client.unload_model("tiny", **kw)):
        for headers in (None, AUTH, {"X-Admin-Key": "wrong"}):  # the inference key is not the admin key
            with pytest.raises(InferenceServerException) as refused:
                call(headers=headers)
            assert refused.value.status() == "401" and "admin key" in refused.value.message()
    assert client.is_model_ready("tiny", headers=AUTH)  # nothing refused changed what is served
    assert by_version(client.get_model_repository_index(headers=AUTH)) == {
        "2": {"name": "tiny", "version": "2", "state": "READY", "reason": ""}
    }
    shutil.copytree(tiny_models / "tiny" / "1", models / "tiny" / "1")
    assert by_version(client.get_model_repository_index(headers=AUTH))["1"]["state"] == "UNAVAILABLE"  # not loaded
    client.load_model("tiny", headers=ADMIN)
    assert {v: r["state"] for v, r in by_version(client.get_model_repository_index(headers=AUTH)).items()} == {
        "2": "READY",
        "1": "READY",
    }
    assert client.is_model_ready("tiny", "1", headers=AUTH)
    client.unload_model("tiny", headers=ADMIN)
    index = by_version(client.get_model_repository_index(headers=AUTH))
    assert {(r["state"], r["reason"]) for r in index.values()} == {("UNAVAILABLE", "unloaded")}
    with pytest.raises(InferenceServerException) as gone:
        client.get_model_metadata("tiny", headers=AUTH)
    assert gone.value.status() == "404" and "was unloaded" in gone.value.message()
    client.load_model("tiny", headers=ADMIN)
    assert client.is_model_ready("tiny", headers=AUTH)
    assert client.get_model_metadata("tiny", headers=AUTH)["parameters"]["version"] == "2"


def test_tritonclient_errors_carry_the_reason(live, tmp_path):
    server, client, models = live
    with pytest.raises(InferenceServerException) as absent:
        client.load_model("nothing-here", headers=ADMIN)
    assert absent.value.status() == "404" and "no directory" in absent.value.message()
    with pytest.raises(InferenceServerException) as override:
        client.load_model("tiny", headers=ADMIN, config='{"backend": "onnxruntime"}')
    assert override.value.status() == "400" and "parameters.config" in override.value.message()
    broken = staged(tmp_path, "3", seed=3)
    with open(broken / "fusion.onnx", "ab") as tamper:
        tamper.write(b"\0")
    os.rename(broken, models / "tiny" / "3")
    with pytest.raises(InferenceServerException) as failed:
        client.load_model("tiny", headers=ADMIN)
    assert failed.value.status() == "400"
    assert "version '3'" in failed.value.message() and "fusion.onnx: sha256 mismatch" in failed.value.message()
    index = by_version(client.get_model_repository_index(headers=AUTH))
    assert index["3"]["state"] == "UNAVAILABLE" and "sha256 mismatch" in index["3"]["reason"]
    assert client.get_model_metadata("tiny", headers=AUTH)["parameters"]["version"] == "2"  # the working one
    with pytest.raises(InferenceServerException) as unknown:
        client.unload_model("nothing-here", headers=ADMIN)
    assert unknown.value.status() == "404"


async def test_index_filters_ready_and_refuses_bad_bodies(models_copy, tmp_path):
    broken = staged(tmp_path, "2", seed=2)
    (broken / "text_encoder.onnx").unlink()
    os.rename(broken, models_copy / "tiny" / "2")
    async with serving(fast_settings(models_copy, model_control="explicit")) as (_, client):  # loopback: no key
        client.headers["Host"] = "localhost"  # keyless model control takes only a loopback Host
        everything = (await client.get("/v2/repository/index")).json()
        assert {r["version"]: r["state"] for r in everything} == {"2": "UNAVAILABLE", "1": "READY"}
        assert "text_encoder.onnx is missing" in by_version(everything)["2"]["reason"]
        ready = (await client.post("/v2/repository/index", json={"ready": True})).json()
        assert [r["version"] for r in ready] == ["1"]
        cases = [
            ("/v2/repository/index", b"{not json", "body is not valid JSON"),
            ("/v2/repository/index", b'{"ready": "yes"}', "ready: Input should be a valid boolean"),
            ("/v2/repository/index", b'{"readdy": true}', "readdy: Extra inputs are not permitted"),
            ("/v2/repository/models/tiny/unload", b'{"parameters": {"cascade": true}}', "parameters.cascade"),
            ("/v2/repository/models/%2E%2E/load", b"", "not a plain directory name"),
            ("/v2/repository/models/..hidden/load", b"", "not a plain directory name"),
        ]
        for path, body, message in cases:
            response = await client.post(path, content=body)
            assert 400 <= response.status_code < 500, (path, response.text)
            assert message.lower() in response.text.lower(), (path, response.text)
        assert default_version(_) == "1"  # no refused request changed anything


async def test_unload_drains_admitted_requests_and_the_name_404s_at_once(models_copy, monkeypatch):
    entered, release = threading.Event(), threading.Event()

    def held_prepare(*args):
        entered.set()
        release.wait(10)
        return prepare_item(*args)

    async with serving(fast_settings(models_copy, model_control="explicit")) as (app, client):
        client.headers["Host"] = "localhost"  # keyless model control takes only a loopback Host
        monkeypatch.setattr(dataplane, "prepare_item", held_prepare)
        held = asyncio.create_task(client.post("/v1/models/tiny/classify", **form(text=TEXT)))
        await asyncio.to_thread(entered.wait, 10)
        monkeypatch.setattr(dataplane, "prepare_item", prepare_item)
        unload = asyncio.create_task(client.post("/v2/repository/models/tiny/unload"))
        await wait_until_async(lambda: status_of(app, "1") == "draining", what="the unload to start draining v1")
        refused = await client.post("/v1/models/tiny/classify", **form(text=TEXT))
        assert refused.status_code == 404 and "was unloaded" in refused.json()["error"]["message"]
        assert status_of(app, "1") == "draining" and not unload.done()  # waits for the admitted request
        assert (await client.get("/readyz")).status_code == 503  # nothing left to serve
        release.set()
        answer = await held
        assert answer.status_code == 200 and answer.json()["version"] == "1"
        done = await unload
        assert done.status_code == 200 and done.json()["versions"][0]["reason"] == "unloaded"
        assert "tiny" not in app.state.context.registry.models
        assert (
            app.state.context.metrics.registry.get_sample_value(
                "fusionserve_model_load_seconds", {"model": "tiny", "version": "1"}
            )
            is None
        )
        loaded = await client.post("/v2/repository/models/tiny/load")
        assert loaded.status_code == 200 and loaded.json()["versions"][0]["state"] == "READY"
        again = await client.post("/v1/models/tiny/classify", **form(text=TEXT))
        assert again.status_code == 200 and (await client.get("/readyz")).status_code == 200
