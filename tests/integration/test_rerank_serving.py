"""/v1/rerank and /v1/score under the server's rules, as every protocol: a deadline that passes while queued
(504), a caller gone while queued (499), the door's 429 before any media is decoded, the endpoint labels of the
metrics, and a front-end with an engine (multi-process mode) answering what one process does."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.integration.conftest import fast_settings, metric
from tests.integration.live import ThreadedServer
from tests.integration.multiprocess import Server
from tests.integration.protocols import HttpJson, Target, text_encoder_busy
from tests.integration.similarity import AUDIO_ONLY, BAD_IMAGE, DOCUMENTS, IMAGE_TEXT, build_models, post
from tests.integration.test_dataplane import _at_capacity
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_models(tmp_path_factory.mktemp("rerank-models"))


@pytest.fixture(scope="module")
def live(models):
    with ThreadedServer(fast_settings(models)) as server:
        yield server


class Rerank(HttpJson):
    """tests/integration/protocols.py's adapter for the cycle's shared behaviours: the first text is the query."""

    name, endpoint, path = "rerank", "rerank", "/v1/rerank"

    def body(self, texts, model="tiny"):
        return {"model": model, "query": texts[0], "documents": texts[1:] or texts}


class Score(HttpJson):
    name, endpoint, path = "score", "score", "/v1/score"

    def body(self, texts, model="tiny"):
        return {"model": model, "text_1": texts[0], "text_2": texts[1:] or texts}


ADAPTERS = [Rerank(), Score()]


@pytest.mark.parametrize("protocol", ADAPTERS, ids=[a.name for a in ADAPTERS])
def test_a_deadline_passing_while_queued_is_a_504_and_a_caller_gone_a_499(live, protocol):
    target = Target(live.base_url, "", live.port, live.app)
    counted = lambda status: metric(live.app, "fusionserve_requests_total", model="tiny",  # noqa: E731
                                    endpoint=protocol.endpoint, status=status)  # fmt: skip
    depth = lambda: metric(live.app, "fusionserve_queue_depth", model="tiny", component="text")  # noqa: E731
    gone = counted("499")
    with text_encoder_busy(target, protocol):
        late = httpx.post(live.base_url + protocol.path, json=protocol.body(["one", "two"]),
                          headers={"x-request-timeout-ms": "200"}, timeout=30)  # fmt: skip
        with protocol.queued_then_gone(target, ["one", "two"]):
            wait_until(lambda: depth() == 2, what="the query's and the document's text to queue")
        wait_until(lambda: depth() == 0, what="the items to leave the queue, the encoder still held")
        wait_until(lambda: counted("499") == gone + 1, what="the request counted as gone (499)")
    assert late.status_code == 504, late.text
    assert late.json()["error"]["code"] == "deadline_exceeded"


@pytest.mark.parametrize("protocol", ADAPTERS, ids=[a.name for a in ADAPTERS])
def test_at_capacity_is_a_429_before_any_media_is_decoded(live, protocol):
    plane = live.app.state.context.plane
    _at_capacity(plane, in_flight=500, rate=50.0)  # expected wait 10 s, far over FUSIONSERVE_MAX_QUEUE_WAIT_MS
    try:
        body = protocol.body(["one", "two"]) | ({"query": BAD_IMAGE} if protocol.name == "rerank" else
                                               {"text_1": BAD_IMAGE})  # fmt: skip
        response = post(live, protocol.path, body)
    finally:
        plane.meter("tiny", "1").in_flight -= 500
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limit_exceeded" and int(response.headers["retry-after"]) >= 1


def test_each_endpoint_is_counted_under_its_label(live):
    before = [metric(live.app, "fusionserve_requests_total", model="tiny", endpoint=e, status="200")
              for e in ("rerank", "score")]  # fmt: skip
    assert post(live, "/v1/rerank", {"model": "tiny", "query": "one", "documents": ["two"]}).status_code == 200
    assert post(live, "/v1/score", {"model": "tiny", "text_1": "one", "text_2": "two"}).status_code == 200
    after = [metric(live.app, "fusionserve_requests_total", model="tiny", endpoint=e, status="200")
             for e in ("rerank", "score")]  # fmt: skip
    assert after == [b + 1 for b in before]


@pytest.mark.slow
def test_a_front_end_and_an_engine_answer_what_one_process_does(live, models, tmp_path):
    calls = [("/v1/rerank", "results", "relevance_score",
              {"model": "tiny", "query": IMAGE_TEXT, "documents": [*DOCUMENTS[:2], AUDIO_ONLY]}),
             ("/v1/score", "data", "score",
              {"model": "tiny", "text_1": ["one", AUDIO_ONLY], "text_2": [IMAGE_TEXT, "two"]})]  # fmt: skip
    split = Server(models, tmp_path / "split.log", workers=1)
    try:
        answers = [httpx.post(split.url + path, json=body, timeout=30).json() for path, _, _, body in calls]
    finally:
        split.stop()
    for (path, key, field, body), answer in zip(calls, answers, strict=True):
        expected = post(live, path, body).json()
        assert [r["index"] for r in answer[key]] == [r["index"] for r in expected[key]], answer
        for name in (field, "probability") if key == "results" else (field,):
            np.testing.assert_allclose([r[name] for r in answer[key]], [r[name] for r in expected[key]], atol=1e-5)
        assert answer["usage"] == expected["usage"]
