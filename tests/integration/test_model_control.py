"""Model control (docs/model-management.md): with default settings nobody can load or unload a
model through the API, whatever key they hold; with FUSIONSERVE_MODEL_CONTROL=explicit only the admin key can,
every attempt is logged (who, what, outcome), and `explicit` without an admin key on a non-loopback address
refuses to start. Proven with `tritonclient.http` against a real server on loopback."""

from __future__ import annotations

import logging
import shutil

import httpx
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from service.frontend.api.pages import OWN_ASSETS
from service.settings import SettingsError, load_settings
from tests.integration.conftest import fast_settings, form, serving
from tests.integration.live import ThreadedServer

API_KEY, ADMIN_KEY = "inference-key", "admin-key"
LOOPBACK_HOST = {"Host": "localhost"}  # the in-process client's own host name is not a loopback name


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
        assert set(response.json()) == {"error", "request_id"} and "model control is off" in response.json()["error"]
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
        failed = await client.post("/v2/repository/models/nothing-here/load", headers=LOOPBACK_HOST)
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


FOREIGN = {
    "a web page": ({"Origin": "http://evil.example"}, "a web page from 'http://evil.example'"),
    "another local server's page": ({"Origin": "http://localhost:3000"}, "'http://localhost:3000'"),
    "a sandboxed page": ({"Origin": "null"}, "a web page from 'null'"),
    "DNS rebinding": ({"Host": "evil.example"}, "Host 'evil.example' is not a loopback name"),
    "a forwarding proxy": ({"X-Forwarded-For": "203.0.113.7"}, "203.0.113.7 is not a loopback address"),
    "a cross-site fetch": ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site: cross-site"),
}


@pytest.fixture(scope="module")
def keyless(tmp_path_factory, tiny_models):
    """FUSIONSERVE_MODEL_CONTROL=explicit on loopback with no admin key, as a real uvicorn server."""
    models = tmp_path_factory.mktemp("keyless") / "models"
    shutil.copytree(tiny_models, models)
    with ThreadedServer(fast_settings(models, model_control="explicit")) as server:
        yield server, triton.InferenceServerClient(f"127.0.0.1:{server.port}")


@pytest.mark.parametrize("case", FOREIGN, ids=list(FOREIGN))
def test_keyless_control_refuses_what_does_not_come_from_this_machine(keyless, case):
    server, client = keyless
    headers, why = FOREIGN[case]
    for call in (client.unload_model, client.load_model):
        with pytest.raises(InferenceServerException) as refused:
            call("tiny", headers=headers)  # an empty body, as a page's form or fetch sends it
        assert refused.value.status() == "403" and why in refused.value.message()
        assert "FUSIONSERVE_ADMIN_KEY" in refused.value.message()
    assert client.is_model_ready("tiny")  # still served


def test_keyless_control_takes_this_servers_own_pages_and_answers_no_cors(keyless):
    server, client = keyless
    unload, load = (f"{server.base_url}/v2/repository/models/tiny/{action}" for action in ("unload", "load"))
    preflight = httpx.options(
        unload, headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers  # a page cannot read or add headers: no CORS
    refused = httpx.post(unload, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    assert "repository/models" not in (OWN_ASSETS / "playground.js").read_text()  # never calls it
    assert httpx.post(unload, headers={"Origin": f"http://127.0.0.1:{server.port}"}, timeout=30).status_code == 200
    assert not client.is_model_ready("tiny")
    assert httpx.post(load, headers={"Origin": f"http://localhost:{server.port}"}, timeout=30).status_code == 200
    assert client.is_model_ready("tiny")  # Swagger UI at /docs is the server's own page: a person clicked it


def test_explicit_with_an_api_key_needs_an_admin_key_even_on_loopback():
    with pytest.raises(SettingsError) as refused:
        load_settings(model_control="explicit", host="127.0.0.1", api_key=API_KEY)
    message = str(refused.value)
    assert "FUSIONSERVE_ADMIN_KEY: Value error, required" in message and "FUSIONSERVE_API_KEY is set" in message
    assert API_KEY not in message
