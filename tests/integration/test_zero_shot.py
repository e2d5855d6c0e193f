"""POST /v1/models/{model}/zero-shot through the real app: the scores are service.zero_shot.probabilities of the
same server's /embed answers (the items' and the label texts'), the temperature is the manifest's, templates act
per modality, label embeddings are cached per version, and every bad request is a 4xx naming its field."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.joint_space import UNCALIBRATED_TEMPERATURE
from service.manifest import SLOTS
from service.zero_shot import SLOT_MODALITY, ensemble, label_text, normalise, parse_template, probabilities
from tests.bundles import build_bundle, joint_space_for, sample_inputs
from tests.integration.conftest import fast_settings, serving
from tests.integration.live import ThreadedServer
from tests.integration.test_batching import batch_sizes
from tests.waiting import wait_until_async

LABELS = ["cat", "dog", "bird", "fish"]
TEMPLATE = {"image": "a photo of {}", "audio": "the sound of {}"}
LIMITS = {"max_zero_shot_labels": 8, "max_queued_items": 16}  # small, so the 413s are cheap to reach


def zero_shot_path(model: str = "tiny") -> str:
    return f"/v1/models/{model}/zero-shot"


def item(seed: int, subset) -> dict:
    raw = sample_inputs(seed)
    return {m: raw[m] if m == "text" else base64.b64encode(raw[m]).decode() for m in subset}


@pytest.fixture(scope="module")
def zs_models(tmp_path_factory) -> Path:
    """tiny/1 calibrated (T = 0.05); plain/1 (image + text, no joint_space block); notext/1 (image + audio)."""
    root = tmp_path_factory.mktemp("zero-shot")
    build_bundle(root, "tiny", "1", joint_space=joint_space_for(8, temperature=0.05))
    build_bundle(root, "plain", "1", modalities=("image", "text"))
    build_bundle(root, "notext", "1", modalities=("image", "audio"))
    return root


@pytest.fixture(scope="module")
def live(zs_models):
    server = ThreadedServer(fast_settings(zs_models, **LIMITS))
    with server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        server.client = client
        yield server


def expected(client, model: str, items: list[dict], labels: list[str], template, temperature: float) -> list[dict]:
    """What the answer must be, from the server's own embeddings: {label: score} and {slot: {label: score}}."""
    templates = parse_template(template)
    results = _embed(client, model, items)
    rows = {}
    for t in {templates[m] for result in results for m in result["modalities"]}:
        texts = [{"text": label_text(t, label)} for label in labels]
        rows[t] = normalise(np.array([r["text"] for r in _embed(client, model, texts)]))
    out = []
    for result in results:
        against = ensemble([rows[templates[m]] for m in result["modalities"]])
        scores = probabilities(np.array([result["fused"]]), against, temperature)[0]
        slots = {slot: probabilities(np.array([result[slot]]), rows[templates[SLOT_MODALITY[slot]]], temperature)[0]
                 for slot in SLOTS if result.get(slot) is not None}  # fmt: skip
        out.append({"scores": dict(zip(labels, scores, strict=True)),
                    "slots": {s: dict(zip(labels, p, strict=True)) for s, p in slots.items()}})  # fmt: skip
    return out


def _embed(client, model: str, items: list[dict]) -> list[dict]:
    response = client.post(f"/v1/models/{model}/embed", json={"inputs": items})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def assert_matches(result: dict, want: dict) -> None:
    scores = [row["score"] for row in result["labels"]]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert {row["label"] for row in result["labels"]} == set(want["scores"])
    for row in result["labels"]:
        assert row["score"] == pytest.approx(float(want["scores"][row["label"]]), abs=1e-5)
    top = result["labels"][0]["label"]
    assert [e["modality"] for e in result["evidence"]] == list(want["slots"])
    for row in result["evidence"]:
        by_label = want["slots"][row["modality"]]
        assert row["label"] == max(by_label, key=by_label.get)
        assert row["score"] == pytest.approx(float(by_label[row["label"]]), abs=1e-5)
        assert row["agrees"] is (row["label"] == top)
    assert result["agreement"] is all(row["agrees"] for row in result["evidence"])


def test_scores_are_the_embeddings_softmax_at_the_manifests_temperature(live):
    items = [item(1, ("image", "text")), item(2, ("audio",)), item(3, ("text",)), item(4, ("image", "text", "audio"))]
    response = live.client.post(zero_shot_path(), json={"inputs": items, "labels": LABELS, "template": TEMPLATE})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model"], body["version"], body["calibrated"], body["temperature"]) == ("tiny", "1", True, 0.05)
    assert [r["modalities"] for r in body["results"]] == [["image", "text"], ["audio"], ["text"],
                                                          ["image", "text", "audio"]]  # fmt: skip
    for result, want in zip(body["results"], expected(live.client, "tiny", items, LABELS, TEMPLATE, 0.05), strict=True):
        assert_matches(result, want)
    assert "batch-text" in response.headers["server-timing"]


def test_multipart_answers_as_json_does(live):
    raw = sample_inputs(5)
    fields = [("image", ("x.png", raw["image"], "image/png")), ("text", (None, raw["text"]))]
    fields += [("labels", (None, label)) for label in LABELS]
    fields += [("template", (None, '{"image": "a photo of {}"}'))]
    response = live.client.post(zero_shot_path(), files=fields)
    assert response.status_code == 200, response.text
    want = expected(live.client, "tiny", [item(5, ("image", "text"))], LABELS, {"image": "a photo of {}"}, 0.05)
    assert_matches(response.json()["results"][0], want[0])


def test_a_bundle_without_a_fitted_temperature_answers_uncalibrated(live):
    items = [item(6, ("image", "text"))]
    response = live.client.post(zero_shot_path("plain"), json={"inputs": items, "labels": LABELS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["calibrated"], body["temperature"]) == (False, UNCALIBRATED_TEMPERATURE)
    assert_matches(body["results"][0], expected(live.client, "plain", items, LABELS, None, UNCALIBRATED_TEMPERATURE)[0])


def test_a_modalitys_template_changes_only_the_items_that_have_it(live):
    items = [item(7, ("image",)), item(7, ("text",))]

    def scores(template) -> list[dict]:
        response = live.client.post(zero_shot_path(), json={"inputs": items, "labels": LABELS, "template": template})
        assert response.status_code == 200, response.text
        return [{row["label"]: row["score"] for row in r["labels"]} for r in response.json()["results"]]

    plain, photo, everywhere = scores(None), scores({"image": "a photo of {}"}), scores("a photo of {}")
    assert photo[0] != pytest.approx(plain[0], abs=1e-4)  # the image item's labels went through its template
    assert photo[1] == plain[1]  # the text item's did not: its modality kept "{}"
    assert everywhere[1] != pytest.approx(plain[1], abs=1e-4) and everywhere[0] == photo[0]


def text_items_encoded(app) -> float:
    value = app.state.context.metrics.registry.get_sample_value(
        "fusionserve_batch_size_sum", {"model": "tiny", "component": "text"}
    )
    return value or 0.0


def test_a_repeated_label_set_costs_no_text_encoder_work(live):
    body = {"inputs": [item(8, ("image",))], "labels": ["red", "green", "blue"], "template": "a {} thing"}
    first = live.client.post(zero_shot_path(), json=body)
    assert first.status_code == 200, first.text
    assert batch_sizes(first.headers["server-timing"])["text"]  # the three label texts were encoded
    before, hits = text_items_encoded(live.app), live.app.state.label_cache.hits
    second = live.client.post(zero_shot_path(), json=body)
    assert second.status_code == 200, second.text
    assert "text" not in batch_sizes(second.headers["server-timing"])  # no text batch at all
    assert text_items_encoded(live.app) == before
    assert live.app.state.label_cache.hits == hits + 3
    assert second.json()["results"] == first.json()["results"]


def _bad(live, body=None, files=None, model="tiny") -> tuple[int, str, str]:
    if files is not None:
        response = live.client.post(zero_shot_path(model), files=files)
    elif isinstance(body, bytes):
        response = live.client.post(zero_shot_path(model), content=body, headers={"content-type": "text/plain"})
    else:
        response = live.client.post(zero_shot_path(model), json=body)
    error = response.json()["error"]
    return response.status_code, error["field"], error["message"]


TEXT_ITEM = [{"text": "a small thing"}]
BAD_JSON = {
    "missing labels": ({"inputs": TEXT_ITEM}, 422, "labels"),
    "labels not a list": ({"inputs": TEXT_ITEM, "labels": "cat"}, 422, "labels"),
    "no labels": ({"inputs": TEXT_ITEM, "labels": []}, 422, "labels"),
    "a label not a string": ({"inputs": TEXT_ITEM, "labels": ["cat", 5]}, 422, "labels[1]"),
    "an empty label": ({"inputs": TEXT_ITEM, "labels": ["cat", "  "]}, 422, "labels[1]"),
    "a repeated label": ({"inputs": TEXT_ITEM, "labels": ["cat", "dog", "cat"]}, 422, "labels[2]"),
    "a label over the text limit": ({"inputs": TEXT_ITEM, "labels": ["cat", "x" * 5000]}, 422, "labels[1]"),
    "a template without {}": ({"inputs": TEXT_ITEM, "labels": LABELS, "template": "a photo"}, 422, "template"),
    "a modality's template without {}": (
        {"inputs": TEXT_ITEM, "labels": LABELS, "template": {"image": "a photo"}}, 422, "template.image"),
    "a template for no modality": (
        {"inputs": TEXT_ITEM, "labels": LABELS, "template": {"smell": "{}"}}, 422, "template.smell"),
    "a template not a string": ({"inputs": TEXT_ITEM, "labels": LABELS, "template": 3}, 422, "template"),
    "an unknown item field": ({"inputs": [{"smell": "x"}], "labels": LABELS}, 422, "inputs[0].smell"),
    "no inputs": ({"labels": LABELS}, 422, "inputs"),
    "an unknown body field": ({"inputs": TEXT_ITEM, "labels": LABELS, "top_k": 3}, 422, "top_k"),
    "labels over the limit": ({"inputs": TEXT_ITEM, "labels": [f"l{i}" for i in range(9)]}, 413, "labels"),
    "more label texts than the text queue": (
        {"inputs": [{"text": "x", "image": item(1, ("image",))["image"]}] * 2, "labels": [f"m{i}" for i in range(8)],
         "template": {"image": "a {} photo"}}, 413, "labels"),  # 8 x 2 templates + 2 texts > 16
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_JSON))
def test_bad_json_requests_are_4xx_naming_the_field(live, case):
    body, status, field = BAD_JSON[case]
    got_status, got_field, message = _bad(live, body)
    assert (got_status, got_field) == (status, field), message
    if status == 413:
        assert "FUSIONSERVE_MAX_" in message


def test_refusals_name_the_limit_model_and_form_field(live):
    status, field, message = _bad(live, {"inputs": TEXT_ITEM, "labels": [f"l{i}" for i in range(9)]})
    assert "FUSIONSERVE_MAX_ZERO_SHOT_LABELS" in message and "8" in message
    image_only = [{"image": item(1, ("image",))["image"]}]
    assert _bad(live, {"inputs": image_only, "labels": LABELS}, model="notext")[:2] == (422, "labels")
    audio = [{"audio": item(1, ("audio",))["audio"]}]
    assert _bad(live, {"inputs": audio, "labels": LABELS}, model="plain")[:2] == (422, "inputs[0].audio")
    assert _bad(live, b"hello")[:2] == (415, "content-type")
    twice = [("text", (None, "x")), ("labels", (None, "a")), ("template", (None, "{}")), ("template", (None, "{}"))]
    assert _bad(live, files=twice)[:2] == (422, "template")
    as_file = [("text", (None, "x")), ("labels", ("a.txt", b"cat", "text/plain"))]
    assert _bad(live, files=as_file)[:2] == (422, "labels")
    assert _bad(live, files=[("text", (None, "x"))])[:2] == (422, "labels")
    assert _bad(live, files=[("text", (None, "x")), ("labels", (None, "a")), ("labels", (None, "a"))])[1] == "labels[1]"


def test_requests_are_counted_under_the_zero_shot_endpoint(live):
    def count(status: str) -> float:
        labels = {"model": "tiny", "endpoint": "zero_shot", "status": status}
        return live.app.state.context.metrics.registry.get_sample_value("fusionserve_requests_total", labels) or 0.0

    ok, bad = count("200"), count("422")
    assert live.client.post(zero_shot_path(), json={"inputs": TEXT_ITEM, "labels": LABELS}).status_code == 200
    assert _bad(live, {"inputs": TEXT_ITEM, "labels": ["a", "a"]})[0] == 422
    assert (count("200"), count("422")) == (ok + 1, bad + 1)


async def test_a_new_version_embeds_its_labels_afresh(tmp_path):
    """Live reload to tiny/2 (other weights): the labels cached for tiny/1 are not reused for it."""
    root = tmp_path / "models"
    build_bundle(root, "tiny", "1", joint_space=joint_space_for(8))
    body = {"inputs": [{"text": "one two"}], "labels": LABELS}
    async with serving(fast_settings(root, model_poll_s=0.1)) as (app, client):
        first = await client.post(zero_shot_path(), json=body)
        assert first.status_code == 200 and first.json()["version"] == "1", first.text
        staged = build_bundle(tmp_path / "staging", "tiny", "2", seed=9, joint_space=joint_space_for(8))
        os.rename(staged, root / "tiny" / "2")  # atomic: the poller sees the version whole

        def default_is_2() -> bool:
            ready = app.state.context.registry.models["tiny"].ready_versions()
            return bool(ready) and ready[0].version == "2"

        await wait_until_async(default_is_2, what="tiny/2 to become the default")
        second = await client.post(zero_shot_path(), json=body)
        assert second.status_code == 200 and second.json()["version"] == "2", second.text
        assert len(batch_sizes(second.headers["server-timing"])["text"]) == 1 + len(LABELS)  # item + 4 labels
        results = (await client.post("/v1/models/tiny/embed", json={"inputs": body["inputs"]})).json()["results"]
        labels = [{"text": label} for label in LABELS]
        rows = (await client.post("/v1/models/tiny/embed", json={"inputs": labels})).json()["results"]
        want = probabilities(np.array([results[0]["fused"]]), normalise(np.array([r["text"] for r in rows])), 0.05)[0]
        got = {row["label"]: row["score"] for row in second.json()["results"][0]["labels"]}
        assert [got[label] for label in LABELS] == pytest.approx(want.tolist(), abs=1e-5)
        assert got != {row["label"]: row["score"] for row in first.json()["results"][0]["labels"]}
    shutil.rmtree(root)
