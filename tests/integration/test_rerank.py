"""`POST /v1/rerank` (and `/v2/rerank`) and `POST /v1/score` against a real server on loopback, with httpx and the
official `cohere` SDK (v1 Client and ClientV2): every score is the cosine of the server's own `/v1/embeddings`
answers, results best first and cut to top_n, the calibrated probability only where the bundle has a zero-shot
temperature, multimodal queries against text documents, one backend.run per request, and every refusal in
OpenAI's shape naming its field (docs/rerank.md). Deadlines, callers gone, the door and multi-process mode:
test_rerank_serving.py."""

from __future__ import annotations

import cohere
import httpx
import numpy as np
import pytest

from service.zero_shot import probabilities
from tests.integration.conftest import fast_settings
from tests.integration.live import ThreadedServer
from tests.integration.similarity import (
    AUDIO_ONLY,
    BAD_IMAGE,
    DOCUMENTS,
    IMAGE_TEXT,
    MAX_DOCUMENTS,
    TEMPERATURE,
    build_models,
    embeddings,
    expected_cosines,
    post,
)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    models = build_models(tmp_path_factory.mktemp("rerank-models"))
    with ThreadedServer(fast_settings(models, max_rerank_documents=MAX_DOCUMENTS)) as server:
        yield server


def test_rerank_scores_are_cosines_best_first_with_calibrated_probabilities(live):
    response = post(live, "/v1/rerank", {"model": "tiny", "query": "one", "documents": DOCUMENTS})
    assert response.status_code == 200, response.text
    body = response.json()
    rows = embeddings(live, "tiny", ["one", *DOCUMENTS])
    cosines, best = rows[1:] @ rows[0], np.argsort(-(rows[1:] @ rows[0]), kind="stable")
    assert [r["index"] for r in body["results"]] == best.tolist()
    np.testing.assert_allclose([r["relevance_score"] for r in body["results"]], cosines[best], atol=1e-5)
    softmax = probabilities(rows[:1], rows[1:], TEMPERATURE)[0]  # of cosine / T, over the documents
    np.testing.assert_allclose([r["probability"] for r in body["results"]], softmax[best], atol=1e-5)
    assert sum(r["probability"] for r in body["results"]) == pytest.approx(1.0, abs=1e-5)
    assert all("document" not in r for r in body["results"])
    assert body["id"] == response.headers["x-request-id"] and body["model"] == "tiny:1"
    assert body["meta"] == {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}
    tokens = post(live, "/v1/embeddings", {"model": "tiny", "input": ["one", *DOCUMENTS]}).json()["usage"]
    assert body["usage"] == tokens
    assert "infer;dur=" in response.headers["server-timing"]


def test_top_n_cuts_and_return_documents_echoes_them_as_sent(live):
    documents = ["zero one", {"text": "two three", "title": "kept"}, AUDIO_ONLY]
    body = {"model": "tiny:1", "query": "two", "documents": documents, "top_n": 2, "return_documents": True}
    results = post(live, "/v1/rerank", body).json()["results"]
    order = np.argsort(-expected_cosines(live, "tiny", "two", ["zero one", "two three", AUDIO_ONLY]), kind="stable")
    assert [r["index"] for r in results] == order[:2].tolist()
    echoed = {0: {"text": "zero one"}, 1: documents[1], 2: AUDIO_ONLY}
    assert [r["document"] for r in results] == [echoed[i] for i in order[:2].tolist()]
    assert 0 < sum(r["probability"] for r in results) < 1  # over all three documents, two shown


def test_vllms_content_param_is_one_document_per_part(live):
    parts = [{"type": "text", "text": "one"}, AUDIO_ONLY[0]]
    body = {"model": "tiny", "query": "two", "documents": {"content": parts}, "return_documents": True}
    results = sorted(post(live, "/v1/rerank", body).json()["results"], key=lambda r: r["index"])
    np.testing.assert_allclose([r["relevance_score"] for r in results],
                               expected_cosines(live, "tiny", "two", ["one", AUDIO_ONLY]), atol=1e-5)  # fmt: skip
    assert [r["document"] for r in results] == [[parts[0]], [parts[1]]]


def test_an_uncalibrated_bundle_answers_cosines_without_probability(live):
    results = post(live, "/v1/rerank", {"model": "plain", "query": "one", "documents": DOCUMENTS}).json()["results"]
    assert all(set(r) == {"index", "relevance_score"} for r in results)
    cosines = expected_cosines(live, "plain", "one", DOCUMENTS)
    np.testing.assert_allclose([r["relevance_score"] for r in results], np.sort(cosines)[::-1], atol=1e-5)


def test_a_multimodal_query_against_text_documents_in_one_backend_run(live):
    backend, runs = live.app.state.context.backend, []
    original = backend.run

    async def counting(model, version, items, deadline):
        runs.append([item.modalities for item in items])
        return await original(model, version, items, deadline)

    backend.run = counting
    try:
        response = post(live, "/v2/rerank", {"model": "tiny", "query": IMAGE_TEXT, "documents": DOCUMENTS[:3]})
    finally:
        del backend.run
    assert response.status_code == 200, response.text
    assert runs == [[["image", "text"], ["text"], ["text"], ["text"]]]  # the query and every document: one call
    cosines = expected_cosines(live, "tiny", IMAGE_TEXT, DOCUMENTS[:3])
    scores = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
    np.testing.assert_allclose([scores[i] for i in range(3)], cosines, atol=1e-5)


def test_the_cohere_sdk_reranks_through_v1_and_v2(live):
    cosines = expected_cosines(live, "tiny", "three", DOCUMENTS)
    best = np.argsort(-cosines, kind="stable")
    with cohere.Client(base_url=live.base_url, api_key="unused", max_retries=0) as co:
        v1 = co.rerank(model="tiny", query="three", documents=DOCUMENTS, top_n=2, return_documents=True)
        with pytest.raises(cohere.errors.UnprocessableEntityError) as caught:
            co.rerank(model="tiny", query="three", documents=DOCUMENTS, rank_fields=["title"])
    assert [r.index for r in v1.results] == best[:2].tolist()
    assert [r.document.text for r in v1.results] == [DOCUMENTS[i] for i in best[:2]]
    np.testing.assert_allclose([r.relevance_score for r in v1.results], cosines[best[:2]], atol=1e-5)
    assert v1.meta.billed_units.search_units == 1 and v1.id
    assert 0 < v1.results[0].probability < 1  # an extra key the SDK's types keep
    assert caught.value.body["error"]["param"] == "rank_fields"
    with cohere.ClientV2(base_url=live.base_url, api_key="unused", max_retries=0) as co:
        v2 = co.rerank(model="tiny", query="three", documents=DOCUMENTS, max_tokens_per_doc=64)
    assert [r.index for r in v2.results] == best.tolist()


def test_score_pairs_one_to_one_one_to_many_and_many_to_many(live):
    one = post(live, "/v1/score", {"model": "tiny", "text_1": "one", "text_2": "two three"})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["object"] == "list" and body["model"] == "tiny:1" and body["id"] == one.headers["x-request-id"]
    assert body["data"][0]["object"] == "score" and body["usage"]["prompt_tokens"] > 0
    np.testing.assert_allclose(body["data"][0]["score"], expected_cosines(live, "tiny", "one", ["two three"])[0],
                               atol=1e-5)  # fmt: skip
    many = post(live, "/v1/score", {"model": "tiny", "text_1": IMAGE_TEXT, "text_2": DOCUMENTS}).json()["data"]
    assert [d["index"] for d in many] == [0, 1, 2, 3]
    np.testing.assert_allclose([d["score"] for d in many], expected_cosines(live, "tiny", IMAGE_TEXT, DOCUMENTS),
                               atol=1e-5)  # fmt: skip
    pairs = post(live, "/v1/score", {"model": "tiny", "text_1": ["one", AUDIO_ONLY], "text_2": DOCUMENTS[:2]})
    rows = embeddings(live, "tiny", ["one", AUDIO_ONLY, *DOCUMENTS[:2]])
    np.testing.assert_allclose([d["score"] for d in pairs.json()["data"]],
                               [rows[0] @ rows[2], rows[1] @ rows[3]], atol=1e-5)  # fmt: skip
    parts = {"content": [{"type": "text", "text": "one"}, AUDIO_ONLY[0]]}  # vLLM's: one item per part
    split = post(live, "/v1/score", {"model": "tiny", "text_1": "two", "text_2": parts}).json()["data"]
    np.testing.assert_allclose([d["score"] for d in split], expected_cosines(live, "tiny", "two", ["one", AUDIO_ONLY]),
                               atol=1e-5)  # fmt: skip


TOO_MANY = ["a"] * (MAX_DOCUMENTS + 1)
RERANK = {"model": "tiny", "query": "one", "documents": ["two"]}
SCORE = {"model": "tiny", "text_1": "one", "text_2": ["two"]}
REFUSALS = {
    "too many documents": ("/v1/rerank", {**RERANK, "documents": TOO_MANY}, 413, "documents"),
    "no documents": ("/v1/rerank", {**RERANK, "documents": []}, 422, "documents"),
    "documents not a list": ("/v1/rerank", {**RERANK, "documents": "two"}, 422, "documents"),
    "top_n 0": ("/v1/rerank", {**RERANK, "top_n": 0}, 422, "top_n"),
    "unknown field": ("/v1/rerank", {**RERANK, "truncate_prompt_tokens": 4}, 422, "truncate_prompt_tokens"),
    "no query": ("/v1/rerank", {"model": "tiny", "documents": ["two"]}, 422, "query"),
    "a part not in a list": ("/v1/rerank", {**RERANK, "documents": ["a", BAD_IMAGE[0]]}, 422, "documents[1].text"),
    "undecodable image": ("/v1/rerank", {**RERANK, "documents": ["a", BAD_IMAGE]}, 422, "documents[1][0].image_url"),
    "unknown model, bad image": ("/v1/rerank", {**RERANK, "model": "nope", "query": BAD_IMAGE}, 404, "model"),
    "unknown version": ("/v2/rerank", {**RERANK, "model": "tiny:9"}, 404, "model"),
    "too many text_2": ("/v1/score", {**SCORE, "text_2": TOO_MANY}, 413, "text_2"),
    "2 against 3": ("/v1/score", {**SCORE, "text_1": ["a", "b"], "text_2": ["a", "b", "c"]}, 422, "text_1"),
    "bad part type": ("/v1/score", {**SCORE, "text_1": [{"type": "pdf"}]}, 422, "text_1[0].type"),
    "not JSON": ("/v1/score", None, 400, "body"),
}


@pytest.mark.parametrize(("path", "body", "status", "param"), REFUSALS.values(), ids=REFUSALS.keys())
def test_bad_requests_are_refused_in_openai_shape_naming_the_field(live, path, body, status, param):
    if body is None:
        response = httpx.post(live.base_url + path, content=b"{", headers={"content-type": "application/json"})
    else:
        response = post(live, path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert error["request_id"] == response.headers["x-request-id"]
    if status == 413:
        assert "FUSIONSERVE_MAX_RERANK_DOCUMENTS" in error["message"] and str(MAX_DOCUMENTS) in error["message"]
