"""Behind a proxy that serves the API under a prefix (`uvicorn --root-path /prefix`, docs/pages.md): uvicorn puts
the prefix in front of every path, the router matches without it, and so must every check in front of the
router. Real uvicorn servers with a root path: the admin key still guards load and unload, the API key
everything but the probes and pages, errors keep their protocol's shape, the door and the drain see the same
paths the routes do. "The proxy strips the prefix" is a request for /v2/... reaching uvicorn; "the proxy keeps
it" is /prefix/v2/... reaching it (routed nowhere: 404, nothing changed)."""

from __future__ import annotations

import sys

import httpx
import pytest

from service.errors import QueueFull
from service.frontend.drain import DrainMiddleware
from tests.integration.conftest import fast_settings, form, serving
from tests.integration.live import ThreadedServer
from tests.integration.request_ids import without_request_id

ROOT = "/prefix"
API_KEY, ADMIN_KEY = "inference-key", "admin-key"
WITH_KEY = {"X-API-Key": API_KEY}
PROBES = ("/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready")
PAGES = ("/", "/docs", "/openapi.json", "/static/playground.js")
UNLOAD, LOAD = "/v2/repository/models/tiny/unload", "/v2/repository/models/tiny/load"


@pytest.fixture(scope="module")
def prefixed(tiny_models):
    """An API key, model control off (the default), under a root path."""
    server = ThreadedServer(fast_settings(tiny_models, api_key=API_KEY), root_path=ROOT)
    with server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield server, client


def classify(client: httpx.Client, headers: dict | None = None) -> httpx.Response:
    return client.post("/v1/models/tiny/classify", **form(text="one"), headers=headers or WITH_KEY)


def test_model_control_off_still_refuses_under_a_root_path(prefixed):
    _, client = prefixed
    for path in (UNLOAD, LOAD):
        refused = client.post(path, headers=WITH_KEY)
        assert refused.status_code == 403, refused.text
        assert "FUSIONSERVE_MODEL_CONTROL" in refused.json()["error"]  # the V2 shape: {"error": "..."}
    assert classify(client).status_code == 200  # still served


def test_probes_and_pages_stay_open_and_the_api_takes_the_key_under_a_root_path(prefixed):
    _, client = prefixed
    for path in PROBES + PAGES:
        assert client.get(path).status_code == 200, path
    assert classify(client, headers={"X-API-Key": "wrong"}).status_code == 401
    refused = client.get("/v2/models/tiny", headers={"X-API-Key": "wrong"})
    assert refused.status_code == 401 and without_request_id(refused) == {
        "error": "authorization: missing or wrong API key"
    }


def test_a_proxy_that_keeps_the_prefix_reaches_no_route_and_changes_nothing(prefixed):
    _, client = prefixed
    kept = client.post(ROOT + UNLOAD, headers=WITH_KEY)  # uvicorn sees /prefix/prefix/v2/...
    assert kept.status_code == 404, kept.text
    assert classify(client).status_code == 200


def test_the_door_refuses_under_a_root_path(prefixed, monkeypatch):
    server, client = prefixed

    askers = []

    def full(model, version, explain=False):
        askers.append(sys._getframe(1).f_code.co_qualname)  # the door's refusal, or a route's cycle
        raise QueueFull("the door is shut for this test", headers={"Retry-After": "0"})

    monkeypatch.setattr(server.app.state.context.plane, "judge", full)  # the question the door asks
    refused = classify(client)
    assert refused.status_code == 429 and refused.json()["error"]["message"] == "the door is shut for this test"
    refused_v2 = client.post("/v2/models/tiny/infer", json={}, headers=WITH_KEY)  # refused before the body is read
    assert refused_v2.status_code == 429 and without_request_id(refused_v2) == {
        "error": "the door is shut for this test"
    }
    assert askers == ["DoorMiddleware.refusal"] * 2  # refused at the door, under the prefix: no route ran


def test_under_a_root_path_load_and_unload_take_only_the_admin_key(models_copy):
    settings = fast_settings(models_copy, api_key=API_KEY, model_control="explicit", admin_key=ADMIN_KEY)
    with ThreadedServer(settings, root_path=ROOT) as server, httpx.Client(base_url=server.base_url) as client:
        refused = client.post(UNLOAD, headers=WITH_KEY)
        assert refused.status_code == 401 and "admin key" in refused.json()["error"]
        assert classify(client).status_code == 200
        assert client.post(UNLOAD, headers={"X-Admin-Key": ADMIN_KEY}, timeout=30).status_code == 200
        assert classify(client).status_code == 404
        assert client.post(LOAD, headers={"X-Admin-Key": ADMIN_KEY}, timeout=30).status_code == 200
        assert classify(client).status_code == 200


async def test_a_draining_server_keeps_its_probes_open_under_a_root_path(tiny_models):
    async with serving(fast_settings(tiny_models)) as (app, _):
        draining = DrainMiddleware(app, lambda: True, max_body_bytes=1024)
        transport = httpx.ASGITransport(app=draining, root_path=ROOT)  # the path as uvicorn sends it: prefixed
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            assert (await client.get(ROOT + "/healthz")).status_code == 200
            assert (await client.get(ROOT + "/v2/health/live")).status_code == 200
            refused = await client.get(ROOT + "/v1/models")
            assert refused.status_code == 503 and refused.headers["connection"] == "close"
