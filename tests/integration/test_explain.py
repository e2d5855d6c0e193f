"""classify?explain=true through the real app: per present modality its own top label and score, whether it
agrees with the fusion, and 422 for a version whose fusion.onnx has no modality_logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.bundle_reference import reference_outputs
from tests.bundles import build_bundle, sample_inputs
from tests.integration.conftest import fast_settings, metric, serving
from tests.integration.test_api import json_item, multipart
from tests.integration.test_batching import batch_sizes, item

LABELS = ["zero", "one", "two", "three"]
CLASSIFY = "/v1/models/tiny/classify"


def expected_evidence(bundle: Path, raw: dict) -> tuple[list[dict], bool]:
    """Evidence from the numpy reference: [{"modality", "label", "score", "agrees"}], agreement."""
    reference = reference_outputs(bundle, raw)
    fused_top = int(np.argmax(reference["probabilities"]))
    evidence = []
    for modality in (m for m in ("image", "text", "audio") if m in raw):
        probabilities = reference["modality_probabilities"][modality]
        top = int(np.argmax(probabilities))
        evidence.append(
            {"modality": modality, "label": LABELS[top], "score": probabilities[top], "agrees": top == fused_top}
        )
    return evidence, all(e["agrees"] for e in evidence)


def assert_evidence(result: dict, expected: list[dict], agreement: bool) -> None:
    assert [e["modality"] for e in result["evidence"]] == [e["modality"] for e in expected]
    for got, want in zip(result["evidence"], expected, strict=True):
        assert (got["label"], got["agrees"]) == (want["label"], want["agrees"])
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
    assert result["agreement"] is agreement is all(e["agrees"] for e in result["evidence"])


@pytest.fixture(scope="module")
def mixed_models(tmp_path_factory) -> Path:
    """tiny/1 without per-modality heads (like bundles before explain), tiny/2 (the default) with them."""
    root = tmp_path_factory.mktemp("mixed")
    build_bundle(root, "tiny", "1", modality_heads=False)
    build_bundle(root, "tiny", "2", seed=2)
    return root


async def test_explain_multipart_gives_evidence_for_exactly_the_present_modalities(client, tiny_models):
    agreements = set()
    for seed in (0, 5):  # with the tiny bundle's weights: one disagreeing modality, then both agreeing
        inputs = sample_inputs(seed)
        response = await client.post(f"{CLASSIFY}?explain=true&top_k=2", **multipart(inputs, ("image", "text")))
        assert response.status_code == 200, response.text
        (result,) = response.json()["results"]
        raw = {m: inputs[m] for m in ("image", "text")}
        expected, agreement = expected_evidence(tiny_models / "tiny" / "1", raw)
        assert_evidence(result, expected, agreement)
        assert len(result["labels"]) == 2  # top_k still applies to the fused labels
        assert all(e["agrees"] == (e["label"] == result["labels"][0]["label"]) for e in result["evidence"])
        agreements.add(result["agreement"])
    assert agreements == {True, False}, "the seeds must cover both an agreeing and a disagreeing item"


async def test_explain_json_batch_covers_every_item_in_canonical_order(client, tiny_models):
    subsets = [("text", "audio", "image"), ("audio",), ("image", "text")]
    inputs = [sample_inputs(seed) for seed in (1, 2, 3)]
    body = {"inputs": [json_item(i, s) for i, s in zip(inputs, subsets, strict=True)]}
    response = await client.post(f"{CLASSIFY}?explain=true", json=body)
    assert response.status_code == 200, response.text
    for result, raw, subset in zip(response.json()["results"], inputs, subsets, strict=True):
        expected, agreement = expected_evidence(tiny_models / "tiny" / "1", {m: raw[m] for m in subset})
        assert_evidence(result, expected, agreement)
    assert [e["modality"] for e in response.json()["results"][0]["evidence"]] == ["image", "text", "audio"]


async def test_without_explain_the_body_is_unchanged(client):
    inputs = sample_inputs(4)
    default = await client.post(CLASSIFY, **multipart(inputs, ("image", "text")))
    explicit = await client.post(f"{CLASSIFY}?explain=false", **multipart(inputs, ("image", "text")))
    assert default.status_code == explicit.status_code == 200
    assert default.content == explicit.content
    (result,) = default.json()["results"]
    assert set(result) == {"modalities", "labels"}


async def test_evidence_is_batch_invariant(tiny_models):
    async with serving(fast_settings(tiny_models, max_queue_delay_ms=50)) as (_, client):
        target = item(0, "image", "text")
        alone = (await client.post(f"{CLASSIFY}?explain=true", json={"inputs": [target]})).json()["results"][0]
        others = [item(seed, "image", "text", "audio") for seed in range(1, 6)]
        response = await client.post(f"{CLASSIFY}?explain=true", json={"inputs": [*others[:2], target, *others[2:]]})
        assert max(batch_sizes(response.headers["server-timing"])["fusion"]) > 1  # really batched
        batched = response.json()["results"][2]
        assert [(e["modality"], e["label"], e["agrees"]) for e in batched["evidence"]] == [
            (e["modality"], e["label"], e["agrees"]) for e in alone["evidence"]
        ]
        np.testing.assert_allclose(
            [e["score"] for e in batched["evidence"]], [e["score"] for e in alone["evidence"]], atol=1e-5
        )
        assert batched["agreement"] == alone["agreement"]


async def test_explain_on_a_version_without_heads_is_422_before_any_inference(mixed_models):
    async with serving(fast_settings(mixed_models)) as (app, client):
        refused = await client.post(f"{CLASSIFY}?explain=true&version=1", **multipart(sample_inputs(1), ("text",)))
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert (error["type"], error["field"]) == ("invalid_input", "explain")
        assert "model 'tiny' version '1' has no per-modality heads" in error["message"]
        assert metric(app, "fusionserve_batch_size_count", model="tiny", component="text") == 0  # nothing ran
        assert metric(app, "fusionserve_rejected_total", model="tiny", reason="invalid") == 1
        plain = await client.post(f"{CLASSIFY}?version=1", **multipart(sample_inputs(1), ("text",)))
        assert plain.status_code == 200 and "evidence" not in plain.json()["results"][0]
        explained = await client.post(f"{CLASSIFY}?explain=true", **multipart(sample_inputs(1), ("text",)))
        assert explained.status_code == 200 and explained.json()["version"] == "2"
        assert [e["modality"] for e in explained.json()["results"][0]["evidence"]] == ["text"]
        versions = {v["version"]: v for v in (await client.get("/v1/models/tiny")).json()["versions"]}
        assert (versions["1"]["explain"], versions["2"]["explain"]) == (False, True)


async def test_openapi_declares_explain_and_evidence(client):
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/models/{model}/classify"]["post"]
    (explain,) = [p for p in operation["parameters"] if p["name"] == "explain"]
    assert explain["in"] == "query" and explain["schema"]["type"] == "boolean" and explain["schema"]["default"] is False
    schemas = spec["components"]["schemas"]
    assert {"evidence", "agreement"} <= set(schemas["ClassifyResult"]["properties"])
    assert set(schemas["Evidence"]["properties"]) == {"modality", "label", "score", "agrees"}
