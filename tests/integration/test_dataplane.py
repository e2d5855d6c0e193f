"""The data plane: every route of every protocol goes through it, inference through its one request cycle
(`serve`, service/frontend/cycle.py), door admission refuses before the body is read (and says when to come back),
responses are what their schemas declare."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path

import httpx

from service.frontend.api.schemas import ClassifyResponse, EmbedResponse, ErrorResponse
from tests.integration.conftest import fast_settings, metric, serving
from tests.integration.test_batching import item

ROOT = Path(__file__).resolve().parents[2]
ROUTES = [
    ("post", "/v1/models/tiny/classify?top_k=2", {"json": {"inputs": [item(1, "text", "image")]}}, "infer"),
    ("post", "/v1/models/tiny/embed", {"json": {"inputs": [item(2, "audio")]}}, "infer"),
    ("get", "/v1/models", {}, "models"),
    ("get", "/v1/models/tiny", {}, "describe"),
    ("get", "/readyz", {}, "ready"),
]


PROTOCOL_MODULES = ("routes.py", "infer.py", "openai_embeddings.py", "v2/rest.py", "v2/core.py", "v2/grpc_server.py")


def test_no_protocol_reaches_past_the_data_plane_or_writes_its_own_cycle():
    for module in PROTOCOL_MODULES:
        source = (ROOT / "service" / "frontend" / "api" / module).read_text()
        reaches = ("plane.registry", "context.registry", ".pipeline.", ".batchers", "preprocess_pool",
                   "plane.track(", "plane.admit(", "plane.infer(", "record_stages")  # fmt: skip
        for reach in reaches:
            assert reach not in source, (module, reach)
        assert "app.state." not in source.replace("request.app.state.context.plane", ""), module


INFERENCE = [
    ("/v1/models/tiny/classify?top_k=2", {"json": {"inputs": [item(1, "text", "image")]}}, "classify"),
    ("/v1/models/tiny/embed", {"json": {"inputs": [item(2, "audio")]}}, "embed"),
    ("/v2/models/tiny/infer", {"json": {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                                                    "data": ["one"]}]}}, "v2_infer"),
    ("/v1/embeddings", {"json": {"model": "tiny", "input": "one"}}, "openai_embeddings"),
]  # fmt: skip


async def test_every_protocol_infers_through_the_one_request_cycle(tiny_models):
    async with serving(fast_settings(tiny_models)) as (app, client):
        plane, calls = app.state.context.plane, []
        serve = plane.serve

        async def spy(call, codec):
            calls.append(call.endpoint)
            return await serve(call, codec)

        plane.serve = spy
        for url, kwargs, endpoint in INFERENCE:
            response = await client.post(url, **kwargs)
            assert response.status_code == 200, (url, response.text)
            assert "total;dur=" in response.headers["server-timing"], url
            assert calls[-1] == endpoint, (url, calls)
            assert metric(app, "fusionserve_requests_total", model="tiny", endpoint=endpoint, status="200") == 1


async def test_every_route_calls_the_data_plane(tiny_models):
    async with serving(fast_settings(tiny_models)) as (app, client):
        plane, calls = app.state.context.plane, []
        for name in ("infer", "models", "describe", "ready"):
            original = getattr(plane, name)

            def spy(*args, _original=original, _name=name, **kwargs):
                calls.append(_name)
                return _original(*args, **kwargs)

            setattr(plane, name, spy)
        for method, url, kwargs, expected in ROUTES:
            calls.clear()
            response = await getattr(client, method)(url, **kwargs)
            assert response.status_code == 200, (url, response.text)
            assert expected in calls, (url, calls)


def _at_capacity(plane, in_flight: int, rate: float, model: str = "tiny", version: str = "1") -> None:
    """Pretend `in_flight` requests are admitted and the version completed `rate` of them last second."""
    meter = plane.meter(model, version)
    last_second = int(time.monotonic()) - 1
    for k in range(int(rate)):
        meter.in_flight += 1
        meter.completed(last_second + k / rate)
    meter.in_flight += in_flight


async def _asgi_post(app, path: str, body: bytes, port: int = 1) -> tuple[int, dict, list[str]]:
    """POST through the raw ASGI interface (from client port `port`), recording whether the app asked for the body."""
    events, sent = [], {}

    async def receive():
        if "body read" in events:  # a connected client: nothing more until it disconnects
            await asyncio.Event().wait()
        events.append("body read")
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            sent["status"], sent["headers"] = message["status"], dict(message["headers"])
        elif message["type"] == "http.response.body":
            sent["body"] = sent.get("body", b"") + message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
             "server": ("test", 80), "client": ("test", port)}  # fmt: skip
    await app(scope, receive, send)
    return sent["status"], {k.decode(): v.decode() for k, v in sent["headers"].items()}, events + [sent["body"]]


async def test_door_refuses_before_the_body_is_read_with_retry_after_from_the_drain_rate(tiny_models):
    async with serving(fast_settings(tiny_models, max_queue_wait_ms=100)) as (app, _):
        plane = app.state.context.plane
        _at_capacity(plane, in_flight=500, rate=50.0)  # expected wait 10 s, far over 100 ms
        body = json.dumps({"inputs": [item(3, "text")]}).encode()
        status, headers, events = await _asgi_post(app, "/v1/models/tiny/embed", body)
        assert status == 429 and "body read" not in events
        error = json.loads(events[-1])["error"]
        assert error["type"] == "queue_full" and "FUSIONSERVE_MAX_QUEUE_WAIT_MS" in error["message"]
        assert int(headers["retry-after"]) == math.ceil(500 / plane.meter("tiny", "1").rate(time.monotonic()))
        assert metric(app, "fusionserve_rejected_total", model="tiny", reason="queue_full") == 1
        assert metric(app, "fusionserve_requests_total", model="tiny", endpoint="embed", status="429") == 1
        plane.meter("tiny", "1").in_flight -= 500
        # another connection: the refused one was told to wait 10 s, and the door holds it that long
        status, _, events = await _asgi_post(app, "/v1/models/tiny/embed", body, port=2)
        assert status == 200 and "body read" in events  # below the bound: admitted as usual


async def test_door_never_refuses_one_full_batch_in_flight_however_low_the_rate(tiny_models):
    """A closed loop of max_batch_size clients is never refused, even when the measured rate says its wait
    is long (a lower floor spiralled with clients that retry at once); one more is."""
    async with serving(fast_settings(tiny_models, max_queue_wait_ms=100, max_batch_size=8)) as (app, client):
        plane, body = app.state.context.plane, {"inputs": [item(8, "text")]}
        _at_capacity(plane, in_flight=7, rate=10.0)  # 0.7 s to drain, but the 8th is still one batch
        assert (await client.post("/v1/models/tiny/embed", json=body)).status_code == 200
        plane.meter("tiny", "1").in_flight += 1  # 8 in flight: the 9th is refused
        refused = await client.post("/v1/models/tiny/embed", json=body)
        assert refused.status_code == 429 and "8 requests in flight" in refused.json()["error"]["message"]


async def test_the_door_refuses_before_routing_in_each_protocols_shape(tiny_models, monkeypatch):
    """Refusals skip FastAPI's routing and validation (under overload they were most of the loop's work):
    an invalid query parameter gets the 429, not the 422, and no route runs; V2's 429 is V2-shaped and
    counted under its own endpoint; a version that does not exist is still the route's 404."""
    from service.frontend.api import routes
    from service.frontend.api.v2 import rest

    async def no_route(*args, **kwargs):
        raise AssertionError("a route ran for a request the door refused")

    async with serving(fast_settings(tiny_models, max_queue_wait_ms=100)) as (app, client):
        _at_capacity(app.state.context.plane, in_flight=500, rate=50.0)
        monkeypatch.setattr(routes, "serve_http", no_route)  # what v1 classify/embed call
        monkeypatch.setattr(rest, "_infer", no_route)  # what both V2 infer routes call
        v1 = await client.post("/v1/models/tiny/classify?top_k=0", json={"inputs": [item(9, "text")]})
        assert v1.status_code == 429 and v1.json()["error"]["type"] == "queue_full"
        assert int(v1.headers["retry-after"]) >= 1
        async with other_connection(app) as other:  # this one was told to wait (see the next test)
            v2 = await other.post("/v2/models/tiny/versions/1/infer", json={"inputs": []})
        assert v2.status_code == 429 and "FUSIONSERVE_MAX_QUEUE_WAIT_MS" in v2.json()["error"]
        monkeypatch.undo()
        async with other_connection(app, port=4322) as fresh:  # `client` was told to wait 10 s
            missing = await fresh.post("/v2/models/tiny/versions/9/infer", json={"inputs": []})
        assert missing.status_code == 404  # not the door's to answer
    assert metric(app, "fusionserve_requests_total", model="tiny", endpoint="classify", status="429") == 1
    assert metric(app, "fusionserve_requests_total", model="tiny", endpoint="v2_infer", status="429") == 1
    assert metric(app, "fusionserve_rejected_total", model="tiny", reason="queue_full") == 2


def other_connection(app, port: int = 4321) -> httpx.AsyncClient:
    """A client whose requests come from another address (the door tells connections apart by it)."""
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", port))
    return httpx.AsyncClient(transport=transport, base_url="http://fusionserve", timeout=60)


async def test_a_connection_that_retries_before_its_retry_after_is_held_until_then(tiny_models):
    """Clients that ignore Retry-After cannot spend the server's time on refusals: an early retry waits out
    its Retry-After (a sleep) and is judged then; another connection is answered at once."""
    async with serving(fast_settings(tiny_models, max_queue_wait_ms=100)) as (app, client):
        _at_capacity(app.state.context.plane, in_flight=40, rate=50.0)  # 0.8 s of work: refused, Retry-After 1
        first = await client.post("/v1/models/tiny/classify", json={"inputs": [item(1, "text")]})
        assert first.status_code == 429 and first.headers["retry-after"] == "1"
        started = time.monotonic()
        early = await client.post("/v1/models/tiny/classify", json={"inputs": [item(1, "text")]})
        held_s = time.monotonic() - started
        assert early.status_code == 429 and held_s >= 0.9  # held out its second, then refused again
        async with other_connection(app) as other:
            started = time.monotonic()
            assert (await other.post("/v1/models/tiny/classify", json={"inputs": [item(1, "text")]})).status_code == 429
            assert time.monotonic() - started < 0.5


async def test_door_admits_while_the_expected_wait_is_short(tiny_models):
    async with serving(fast_settings(tiny_models, max_queue_wait_ms=1000)) as (app, client):
        _at_capacity(app.state.context.plane, in_flight=100, rate=1000.0)  # expected wait 0.1 s < 1 s
        response = await client.post("/v1/models/tiny/embed", json={"inputs": [item(4, "text")]})
        assert response.status_code == 200, response.text


async def test_responses_are_exactly_their_declared_schema(tiny_models):
    async with serving(fast_settings(tiny_models)) as (_, client):
        classify = await client.post("/v1/models/tiny/classify?explain=true",
                                     json={"inputs": [item(5, "image", "audio"), item(6, "text")]})  # fmt: skip
        embed = await client.post("/v1/models/tiny/embed", json={"inputs": [item(7, "image", "text", "audio")]})
        error = await client.post("/v1/models/tiny/embed", json={"inputs": [{"image": "***"}]})
    for response, schema in ((classify, ClassifyResponse), (embed, EmbedResponse), (error, ErrorResponse)):
        body = response.json()
        # a round trip through the declared model loses nothing and adds nothing: no undeclared keys
        assert schema.model_validate(body).model_dump(exclude_unset=True) == body, schema.__name__
    assert classify.headers["content-type"] == "application/json"
