"""Classify and embed through the real app: every modality subset, both content types, parity."""

from __future__ import annotations

import base64
import itertools

import numpy as np
import pytest

from tests.bundle_reference import reference_outputs
from tests.bundles import sample_inputs

SUBSETS = [s for n in (1, 2, 3) for s in itertools.combinations(("image", "text", "audio"), n)]


def multipart(inputs: dict, subset) -> dict:
    files = {}
    if "image" in subset:
        files["image"] = ("digit.png", inputs["image"], "image/png")
    if "audio" in subset:
        files["audio"] = ("clip.wav", inputs["audio"], "audio/wav")
    if "text" in subset:
        files["text"] = (None, inputs["text"])  # a plain (non-file) form field
    return {"files": files}


def json_item(inputs: dict, subset) -> dict:
    item = {}
    for modality in subset:
        value = inputs[modality]
        item[modality] = value if modality == "text" else base64.b64encode(value).decode()
    return item


@pytest.mark.parametrize("subset", SUBSETS, ids="+".join)
async def test_classify_multipart_matches_reference_for_every_subset(client, tiny_models, subset):
    inputs = sample_inputs(seed=3)
    response = await client.post("/v1/models/tiny/classify?top_k=4", **multipart(inputs, subset))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["version"]) == ("tiny", "1")
    (result,) = body["results"]
    assert result["modalities"] == [m for m in ("image", "text", "audio") if m in subset]
    expected = reference_outputs(tiny_models / "tiny" / "1", {m: inputs[m] for m in subset})
    labels = ["zero", "one", "two", "three"]
    scores = {row["label"]: row["score"] for row in result["labels"]}
    for label, probability in zip(labels, expected["probabilities"], strict=True):
        assert scores[label] == pytest.approx(probability, abs=1e-5)
    assert [r["score"] for r in result["labels"]] == sorted(scores.values(), reverse=True)


@pytest.mark.parametrize("subset", SUBSETS, ids="+".join)
async def test_embed_json_matches_reference_for_every_subset(client, tiny_models, subset):
    inputs = sample_inputs(seed=5)
    response = await client.post("/v1/models/tiny/embed", json={"inputs": [json_item(inputs, subset)]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dim"] == 8
    (result,) = body["results"]
    expected = reference_outputs(tiny_models / "tiny" / "1", {m: inputs[m] for m in subset})
    np.testing.assert_allclose(result["fused"], expected["fused"], atol=1e-5)
    for modality in ("image", "text", "audio"):
        if modality in subset:
            np.testing.assert_allclose(result[modality], expected["embeddings"][modality], atol=1e-5)
            assert np.linalg.norm(result[modality]) == pytest.approx(1.0, abs=1e-5)
        else:
            assert result.get(modality) is None


async def test_classify_accepts_json_and_embed_accepts_multipart(client):
    inputs = sample_inputs(seed=1)
    items = [json_item(inputs, ("text",)), json_item(inputs, ("image", "audio"))]
    classified = await client.post("/v1/models/tiny/classify?top_k=2", json={"inputs": items})
    assert classified.status_code == 200, classified.text
    assert [len(r["labels"]) for r in classified.json()["results"]] == [2, 2]
    embedded = await client.post("/v1/models/tiny/embed", **multipart(inputs, ("text", "image")))
    assert embedded.status_code == 200, embedded.text
    assert embedded.json()["results"][0]["modalities"] == ["image", "text"]


async def test_server_timing_reports_stages_and_batch_sizes(client):
    inputs = sample_inputs(seed=2)
    response = await client.post("/v1/models/tiny/classify", **multipart(inputs, ("image", "text")))
    timing = response.headers["server-timing"]
    for stage in ("decode;dur=", "queue;dur=", "infer;dur=", "total;dur="):
        assert stage in timing
    assert 'batch-image;desc="1"' in timing and 'batch-fusion;desc="1"' in timing
    assert "batch-audio" not in timing  # no compute on absent inputs


async def test_version_query_and_model_listing(client):
    inputs = sample_inputs(seed=2)
    response = await client.post("/v1/models/tiny/classify?version=1", **multipart(inputs, ("text",)))
    assert response.status_code == 200
    listing = (await client.get("/v1/models")).json()["models"]
    assert [m["name"] for m in listing] == ["tiny"]
    detail = (await client.get("/v1/models/tiny")).json()
    assert detail["default_version"] == "1"
    (version,) = detail["versions"]
    assert version["status"] == "ready" and version["provider"] == "CPUExecutionProvider"
    assert version["modalities"] == ["image", "text", "audio"]
    assert version["golden_max_error"] < 1e-5
    assert detail["limits"]["max_items_per_request"] == 32


async def test_openapi_lets_swagger_send_files(client):
    spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/v1/models/{model}/classify"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    assert "application/json" in body
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text


async def test_health_and_readiness(client):
    assert (await client.get("/healthz")).json() == {"status": "alive"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert body["models"]["tiny"]["1"] == {
        "status": "ready",
        "provider": "CPUExecutionProvider",
        "reason": None,
    }
