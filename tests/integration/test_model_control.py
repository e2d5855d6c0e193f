"""Model control (issue 19 §5, docs/model-management.md): with default settings nobody can load or unload a
model through the API, whatever key they hold; with FUSIONSERVE_MODEL_CONTROL=explicit only the admin key can,
every attempt is logged (who, what, outcome), and `explicit` without an admin key on a non-loopback address
refuses to start. Proven with `tritonclient.http` against a real server on loopback."""

from __future__ import annotations

import logging

import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from service.settings import SettingsError, load_settings
from tests.integration.conftest import fast_settings, form, serving
from tests.integration.live import ThreadedServer

API_KEY, ADMIN_KEY = "inference-key", "admin-key"


@pytest.mark.parametrize("api_key", [None, API_KEY], ids=["no-api-key", "api-key"])
def test_default_settings_refuse_load_and_unload_and_the_model_keeps_serving(tiny_models, api_key):
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    with ThreadedServer(fast_settings(tiny_models, api_key=api_key)) as server:
        client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        for call in (client.unload_model, client.load_model):
            with pytest.raises(InferenceServerException) as refused:
                call("tiny", headers=headers)  # even the inference key does not change what is served
            assert refused.value.status() == "403"
            assert "FUSIONSERVE_MODEL_CONTROL" in refused.value.message()
        assert client.is_server_ready(headers=headers) and client.is_model_ready("tiny", headers=headers)
        assert client.get_model_repository_index(headers=headers)[0]["state"] == "READY"  # reading stays open


async def test_refusal_is_in_the_v2_error_shape_and_logged(tiny_models, caplog):
    caplog.set_level(logging.INFO, logger="fusionserve.audit")
    async with serving(fast_settings(tiny_models)) as (_, client):
        response = await client.post("/v2/repository/models/tiny/unload")
        assert response.status_code == 403
        assert set(response.json()) == {"error"} and "model control is off" in response.json()["error"]
        assert (await client.post("/v1/models/tiny/classify", **form(text="one"))).status_code == 200
        assert (await client.get("/readyz")).json()["ready"] is True
    (record,) = [r for r in caplog.records if r.name == "fusionserve.audit"]
    assert record.levelno == logging.WARNING
    assert "unload of model 'tiny'" in record.getMessage() and "refused (403)" in record.getMessage()


async def test_explicit_control_takes_only_the_admin_key_and_logs_each_change(models_copy, caplog):
    caplog.set_level(logging.INFO, logger="fusionserve.audit")
    settings = fast_settings(models_copy, api_key=API_KEY, model_control="explicit", admin_key=ADMIN_KEY)
    async with serving(settings) as (_, client):
        url = "/v2/repository/models/tiny/unload"
        for headers in ({}, {"Authorization": f"Bearer {API_KEY}"}, {"X-API-Key": API_KEY}):
            refused = await client.post(url, headers=headers)
            assert refused.status_code == 401 and "admin key" in refused.json()["error"], headers
            assert refused.headers["www-authenticate"] == "Bearer"
        assert (await client.post(url, headers={"X-Admin-Key": ADMIN_KEY})).status_code == 200
        unloaded = await client.post("/v1/models/tiny/classify", **form(text="one"), headers={"X-API-Key": API_KEY})
        assert unloaded.status_code == 404
        loaded = await client.post("/v2/repository/models/tiny/load", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert loaded.status_code == 200 and loaded.json()["versions"][0]["state"] == "READY"
    lines = [r.getMessage() for r in caplog.records if r.name == "fusionserve.audit"]
    assert len(lines) == 5 and all("127.0.0.1" in line for line in lines)  # who: the client's address
    assert sum("refused (401)" in line for line in lines) == 3
    assert "unload of model 'tiny'" in lines[3] and "with the admin key: done" in lines[3]
    assert "load of model 'tiny'" in lines[4] and lines[4].endswith("done")


async def test_explicit_on_loopback_without_an_admin_key_is_allowed_and_says_so(models_copy, caplog):
    caplog.set_level(logging.INFO, logger="fusionserve.audit")
    async with serving(fast_settings(models_copy, model_control="explicit", host="127.0.0.1")) as (_, client):
        failed = await client.post("/v2/repository/models/nothing-here/load")
        assert failed.status_code == 404
    (line,) = [r.getMessage() for r in caplog.records if r.name == "fusionserve.audit"]
    assert "no key (loopback only" in line and "failed (404)" in line


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "fusionserve.example"])
def test_explicit_without_an_admin_key_off_loopback_refuses_to_start(host):
    with pytest.raises(SettingsError) as refused:
        load_settings(model_control="explicit", host=host)
    assert "FUSIONSERVE_ADMIN_KEY" in str(refused.value) and "FUSIONSERVE_MODEL_CONTROL=explicit" in str(refused.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_explicit_on_loopback_starts_without_an_admin_key(host):
    assert load_settings(model_control="explicit", host=host).admin_key is None


def test_the_admin_key_must_differ_from_the_api_key_and_is_never_echoed():
    with pytest.raises(SettingsError) as refused:
        load_settings(api_key="same-secret", admin_key="same-secret")
    assert "FUSIONSERVE_ADMIN_KEY" in str(refused.value) and "same-secret" not in str(refused.value)


def test_the_admin_key_comes_from_a_docker_secret_file(tmp_path, monkeypatch):
    from service import settings as settings_module

    (tmp_path / "fusionserve_admin_key").write_text("from-a-secret\n")
    monkeypatch.setattr(settings_module, "SECRETS_DIR", tmp_path)
    settings = load_settings(model_control="explicit", host="0.0.0.0")
    assert settings.admin_key.get_secret_value() == "from-a-secret"
