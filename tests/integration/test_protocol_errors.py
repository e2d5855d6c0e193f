"""Errors answered by middleware, before any route runs, still come in the shape of the path's protocol:
v1 `{"error": {type, message, field}}`, KServe V2 `{"error": "<message>"}`, OpenAI `{"error": {message, type,
param, code}}` — the clients of each protocol parse only their own."""

from __future__ import annotations

import pytest

from tests.integration.conftest import fast_settings, serving

KEY = "s3cret"


@pytest.fixture
async def keyed(tiny_models):
    async with serving(fast_settings(tiny_models, api_key=KEY, max_upload_bytes=4096)) as (_, client):
        yield client


async def test_missing_key_is_401_in_each_protocols_shape(keyed):
    v1 = await keyed.post("/v1/models/tiny/embed", json={"inputs": [{"text": "one"}]})
    assert v1.status_code == 401 and v1.json()["error"]["field"] == "authorization"
    v2 = await keyed.post("/v2/models/tiny/infer", json={"inputs": []})
    assert v2.status_code == 401 and v2.json()["error"].endswith("missing or wrong API key")
    assert v2.headers["www-authenticate"] == "Bearer"
    openai = await keyed.post("/v1/embeddings", json={"model": "tiny", "input": "one"})
    assert openai.status_code == 401
    assert openai.json()["error"]["type"] == "authentication_error"
    assert openai.json()["error"]["message"] == "missing or wrong API key"


async def test_probes_of_every_protocol_stay_open(keyed):
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
        assert (await keyed.get(path)).status_code == 200, path
    assert (await keyed.get("/v2/models/tiny/ready")).status_code == 401  # model routes need the key


async def test_declared_oversized_body_is_413_in_each_protocols_shape(keyed):
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    body = b"x" * 5000
    v2 = await keyed.post("/v2/models/tiny/infer", content=body, headers=headers)
    assert v2.status_code == 413 and "4096 bytes" in v2.json()["error"]
    openai = await keyed.post("/v1/embeddings", content=body, headers=headers)
    assert openai.status_code == 413 and "FUSIONSERVE_MAX_UPLOAD_BYTES" in openai.json()["error"]["message"]
    v1 = await keyed.post("/v1/models/tiny/embed", content=body, headers=headers)
    assert v1.status_code == 413 and v1.json()["error"]["type"] == "payload_too_large"


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank", "/v1/score"])
async def test_rerank_and_score_refusals_before_the_route_are_openai_shaped(keyed, path):
    missing = await keyed.post(path, json={"model": "tiny", "query": "one", "documents": ["two"]})
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    oversized = await keyed.post(path, content=b"x" * 5000, headers=headers)
    assert oversized.status_code == 413
    assert "FUSIONSERVE_MAX_UPLOAD_BYTES" in oversized.json()["error"]["message"]  # not KServe V2's {"error": str}


async def test_a_zero_shot_refused_before_its_route_counts_under_its_own_endpoint(keyed):
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    refused = await keyed.post("/v1/models/tiny/zero-shot", content=b"x" * 5000, headers=headers)
    assert refused.status_code == 413 and refused.json()["error"]["type"] == "payload_too_large"
    metrics = (await keyed.get("/metrics")).text
    assert 'fusionserve_requests_total{endpoint="zero_shot",model="tiny",status="413"} 1.0' in metrics
