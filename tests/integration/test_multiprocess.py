"""Multi-process mode against one process, both real `fusionserve serve` process trees on the tiny bundle:
FUSIONSERVE_WORKERS=2 (two front-ends and one engine under the supervisor) answers every protocol — v1, KServe
V2 REST and gRPC (tritonclient), OpenAI (the openai SDK) — exactly as FUSIONSERVE_WORKERS=0 does, good input
and bad, and one /metrics shows every process's series."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from prometheus_client.parser import text_string_to_metric_families

from tests.bundles import sample_inputs
from tests.integration.multiprocess import Server
from tests.integration.protocols import IDS, PROTOCOLS, Target, b64, tensors, v1_error
from tests.integration.request_ids import without_request_id
from tests.integration.test_v2_rest import rows_of

pytestmark = pytest.mark.slow
OUTPUTS = ["probabilities", "label", "fused_embedding", "image_embedding", "text_embedding", "audio_embedding",
           "present"]  # fmt: skip


@pytest.fixture(scope="module")
def servers(tiny_models, tmp_path_factory):
    """(one process, two front-ends + an engine); the latter's metrics files in a directory the test can read."""
    logs = tmp_path_factory.mktemp("logs")
    metrics_dir = tmp_path_factory.mktemp("metrics")
    one = Server(tiny_models, logs / "one.log", workers=0, max_items_per_request=4)
    try:
        split = Server(tiny_models, logs / "split.log", env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
                       workers=2, max_items_per_request=4)  # fmt: skip
    except BaseException:
        one.stop()
        raise
    split.metrics_dir = metrics_dir
    yield one, split
    assert split.stop() == 0, split.tail()
    assert one.stop() == 0, one.tail()


def v1_items(seeds=(1, 2, 3)) -> list[dict]:
    items = []
    for seed in seeds:
        raw = sample_inputs(seed)
        items.append({"image": base64.b64encode(raw["image"]).decode(), "text": raw["text"],
                      "audio": base64.b64encode(raw["audio"]).decode()})  # fmt: skip
    return items + [{"text": "just some words"}, {"image": items[0]["image"]}]


def assert_same_json(a, b, path="answer") -> None:
    """Equal structure and strings; numbers within 1e-5 (batching may group items differently)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same_json(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_json(x, y, f"{path}[{index}]")
    elif isinstance(a, float):
        assert abs(a - b) <= 1e-5, (path, a, b)
    else:
        assert a == b, (path, a, b)


@pytest.mark.parametrize("route", ["classify?top_k=4", "embed"])
def test_v1_answers_as_one_process(servers, route):
    answers = []
    for server in servers:
        items = v1_items()
        response = httpx.post(f"{server.url}/v1/models/tiny/{route}", json={"inputs": items[:4]}, timeout=30)
        assert response.status_code == 200, response.text
        assert "queue;dur=" in response.headers["server-timing"] and "batch-" in response.headers["server-timing"]
        answers.append(response.json())
    assert_same_json(*answers)


def test_v2_rest_and_grpc_answer_as_one_process(servers):
    rows = rows_of()
    results = []
    for server in servers:
        with triton_http.InferenceServerClient(server.url.removeprefix("http://")) as client:
            results.append(client.infer("tiny", tensors(triton_http, rows)))
        with triton_grpc.InferenceServerClient(server.grpc_url) as client:
            results.append(client.infer("tiny", tensors(triton_grpc, rows)))
    one_rest, one_grpc, split_rest, split_grpc = results
    for name in OUTPUTS:
        for got in (one_grpc, split_rest, split_grpc):
            expected, actual = one_rest.as_numpy(name), got.as_numpy(name)
            if expected.dtype == np.object_:
                assert expected.tolist() == actual.tolist(), name
            else:
                np.testing.assert_allclose(actual, expected, atol=1e-5, err_msg=name)


def test_openai_embeddings_answer_as_one_process(servers):
    vectors = []
    for server in servers:
        with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0) as sdk:
            answer = sdk.embeddings.create(model="tiny", input=["a red kite", "two green stones"])
        vectors.append(np.array([row.embedding for row in answer.data]))
    np.testing.assert_allclose(vectors[1], vectors[0], atol=1e-5)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/models/tiny/classify", {"inputs": [{"image": base64.b64encode(b"not an image").decode()}]}),
        ("/v1/models/nothing/classify", {"inputs": [{"text": "hi"}]}),
        ("/v1/models/tiny/classify", {"inputs": [{"text": "x"}] * 5}),  # over max_items_per_request
        ("/v2/models/tiny/infer", {"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]}),
        ("/v1/embeddings", {"model": "tiny", "input": [""]}),
    ],
)
def test_bad_input_answers_as_one_process(servers, path, body):
    answers = [httpx.post(server.url + path, json=body, timeout=30) for server in servers]
    assert answers[0].status_code == answers[1].status_code
    assert 400 <= answers[0].status_code < 500
    assert without_request_id(answers[0]) == without_request_id(answers[1])


MODES = {"one_process": 0, "multi_process": 1}  # index into `servers`


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
@pytest.mark.parametrize("protocol", PROTOCOLS, ids=IDS)
def test_every_protocol_refuses_alike_in_both_modes(servers, protocol, mode):
    """The refusals test_protocols.py checks in process, from a real process tree of each mode: an unknown model,
    and an undecodable image answered with v1's status and message, its place named the protocol's way."""
    target = Target.of(servers[mode])
    refusal = protocol.texts(target, ["one"], model="nope")
    assert refusal.status == protocol.status(404) and "model 'nope' not found" in refusal.message, refusal
    bad = b"\x00 not an image at all"
    v1 = v1_error(target, {"image": b64(bad)})
    refusal = protocol.image_row(target, bad)
    assert refusal.status == protocol.status(v1["status"]), refusal
    assert refusal.message == v1["message"].replace("inputs[0].image", protocol.image_field)
    served = protocol.texts(target, ["one", "two"])  # and the same texts get v1's vectors
    np.testing.assert_allclose(served, PROTOCOLS[0].texts(target, ["one", "two"]), atol=1e-5)


def samples(text: str, name: str) -> dict[tuple, float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_one_metrics_page_shows_every_process(servers):
    _, split = servers
    before = sum(samples(httpx.get(split.url + "/metrics").text, "fusionserve_requests_total").values())
    for _ in range(24):  # a connection each: the kernel spreads them over both front-ends
        answer = httpx.post(split.url + "/v1/models/tiny/classify", json={"inputs": [{"text": "hello"}]})
        assert answer.status_code == 200
    pages = [httpx.get(split.url + "/metrics").text for _ in range(4)]  # whichever front-end answers
    for page in pages:  # one front-end alone would count only the requests it served
        assert sum(samples(page, "fusionserve_requests_total").values()) == before + 24
        assert sum(samples(page, "fusionserve_batch_size_count").values()) > 0  # the engine's batches
    writers = {path.stem.rsplit("_", 1)[-1] for path in split.metrics_dir.glob("*.db")}
    assert len(writers) >= 3, writers  # both front-ends and the engine wrote series


def test_front_end_processes_never_load_onnxruntime(servers):
    """The fence, on the real process tree: only the engine maps onnxruntime's library (every front-end
    process decodes and speaks the protocols without it)."""
    _, split = servers

    def maps_onnxruntime(pid: int) -> bool:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
            return "onnxruntime" in maps.read()

    front_ends, engines = split.child_pids("front-end"), split.child_pids("engine")
    assert len(front_ends) == 2 and len(engines) == 1
    assert not any(maps_onnxruntime(pid) for pid in front_ends)
    assert all(maps_onnxruntime(pid) for pid in engines)
