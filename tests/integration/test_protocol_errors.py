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
