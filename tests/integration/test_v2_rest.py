"""KServe V2 over REST, proven with the real `tritonclient.http` client against a real server on loopback:
health, metadata, infer with binary and JSON tensors equal to v1's answers, and bad inputs → v1's messages.
Deadlines, disconnects, counting and undecodable images, as every protocol does them: test_protocols.py."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.bundles import sample_inputs
from tests.integration.conftest import fast_settings, metric, serving
from tests.integration.live import ThreadedServer
from tests.integration.protocols import fp32_image, refused
from tests.integration.request_ids import without_request_id
from tests.integration.test_dataplane import _asgi_post, _at_capacity

LABELS = ["zero", "one", "two", "three"]
MODALITIES = ["image", "text", "audio"]
ROW_SUBSETS = [("image",), ("text", "audio"), ("image", "text", "audio")]  # a batch of mixed modality subsets
MAX_ROWS = 4


@pytest.fixture(scope="module")
def live(tiny_models):
    with ThreadedServer(fast_settings(tiny_models, max_items_per_request=MAX_ROWS)) as server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    client = triton.InferenceServerClient(live.base_url.removeprefix("http://"), network_timeout=30)
    yield client
    client.close()


def rows_of(subsets=ROW_SUBSETS) -> list[dict]:
    return [{m: sample_inputs(seed=10 + i)[m] for m in subset} for i, subset in enumerate(subsets)]


def element(modality: str, row: dict, binary: bool) -> bytes:
    value = row.get(modality, b"")
    value = value.encode() if isinstance(value, str) else value
    return value if binary or modality == "text" else base64.b64encode(value)  # JSON tensors carry media as base64


def tensors(rows: list[dict], binary: bool = True, modalities=MODALITIES) -> list[triton.InferInput]:
    inputs = []
    for modality in modalities:
        tensor = triton.InferInput(modality, [len(rows)], "BYTES")
        data = np.array([element(modality, row, binary) for row in rows], dtype=np.object_)
        tensor.set_data_from_numpy(data, binary_data=binary)
        inputs.append(tensor)
    return inputs


def wanted(*names: str, binary: bool = True) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=binary) for name in names]


def v1_answers(live, rows: list[dict]) -> tuple[dict, dict]:
    items = [{m: v if m == "text" else base64.b64encode(v).decode() for m, v in row.items()} for row in rows]
    embed = httpx.post(live.base_url + "/v1/models/tiny/embed", json={"inputs": items}, timeout=30)
    classify = httpx.post(live.base_url + "/v1/models/tiny/classify?top_k=4", json={"inputs": items}, timeout=30)
    assert embed.status_code == classify.status_code == 200, (embed.text, classify.text)
    return embed.json(), classify.json()


def test_health_and_server_metadata(live, client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny", "1")
    assert not client.is_model_ready("tiny", "7") and not client.is_model_ready("nope")
    not_ready = httpx.get(live.base_url + "/v2/models/tiny/versions/7/ready")  # the protocol: 4xx means false
    assert (not_ready.status_code, not_ready.json()) == (400, {"name": "tiny", "ready": False})
    unknown = httpx.get(live.base_url + "/v2/models/nope/ready")
    assert unknown.status_code == 404 and unknown.json()["error"].startswith("model 'nope' not found")
    metadata = client.get_server_metadata()
    assert metadata["name"] == "fusionserve" and metadata["version"]
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_lists_inputs_outputs_and_labels(client):
    metadata = client.get_model_metadata("tiny")
    assert metadata == client.get_model_metadata("tiny", "1")
    assert (metadata["name"], metadata["versions"], metadata["platform"]) == ("tiny", ["1"], "fusionserve")
    assert metadata["inputs"] == [{"name": m, "datatype": "BYTES", "shape": [-1]} for m in MODALITIES]
    outputs = {o["name"]: (o["datatype"], o["shape"]) for o in metadata["outputs"]}
    assert outputs == {
        "probabilities": ("FP32", [-1, 4]), "label": ("BYTES", [-1]), "fused_embedding": ("FP32", [-1, 8]),
        "image_embedding": ("FP32", [-1, 8]), "text_embedding": ("FP32", [-1, 8]),
        "audio_embedding": ("FP32", [-1, 8]), "present": ("BOOL", [-1, 3]),
    }  # fmt: skip
    assert metadata["parameters"]["labels"] == LABELS and metadata["parameters"]["embedding_dim"] == 8
    error = refused(lambda: client.get_model_metadata("tiny", "7"))
    assert error.status() == "404" and "'7'" in error.message()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_mixed_batch_equals_v1_answers(live, client, binary):
    rows = rows_of()
    result = client.infer("tiny", tensors(rows, binary), outputs=None if binary else wanted(binary=False))
    if not binary:  # the client asked each output as JSON; every output of the model answers
        assert {o["name"] for o in result.get_response()["outputs"]} >= {"probabilities", "present"}
    embed, classify = v1_answers(live, rows)
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (3, 4) and probabilities.dtype == np.float32
    answers = zip(ROW_SUBSETS, embed["results"], classify["results"], strict=True)
    for row, (subset, v1_embed, v1_classify) in enumerate(answers):
        scores = {entry["label"]: entry["score"] for entry in v1_classify["labels"]}
        np.testing.assert_allclose(probabilities[row], [scores[label] for label in LABELS], atol=1e-5)
        assert result.as_numpy("label")[row].decode() == v1_classify["labels"][0]["label"]
        np.testing.assert_allclose(result.as_numpy("fused_embedding")[row], v1_embed["fused"], atol=1e-5)
        for modality in MODALITIES:
            expected = v1_embed[modality] if modality in subset else np.zeros(8)  # zeros where absent
            np.testing.assert_allclose(result.as_numpy(f"{modality}_embedding")[row], expected, atol=1e-5)
        assert result.as_numpy("present")[row].tolist() == [m in subset for m in MODALITIES]


def test_outputs_selection_answers_only_those(client):
    result = client.infer("tiny", tensors(rows_of()[:2], modalities=["image", "text"]), model_version="1",
                          outputs=wanted("label", "present"), request_id="req-7")  # fmt: skip
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["label", "present"]
    assert (response["id"], response["model_version"]) == ("req-7", "1")
    assert result.as_numpy("present").tolist() == [[True, False, False], [False, True, False]]
    assert result.as_numpy("probabilities") is None
    error = refused(lambda: client.infer("tiny", tensors(rows_of()[:1]), outputs=wanted("logits")))
    assert error.status() == "422" and "unknown output 'logits'" in error.message()


def mismatched() -> list[triton.InferInput]:
    image, text = tensors(rows_of()[:2], modalities=["image"]), tensors(rows_of()[:1], modalities=["text"])
    return image + text


BAD_INPUTS = {  # name → (model, inputs, status, the message it carries)
    "unknown_model": ("nope", lambda: tensors(rows_of()[:1]), "404", "model 'nope' not found"),
    "empty_row": ("tiny", lambda: tensors([{"text": "one"}, {}]), "422",
                  "row[1]: no input: send at least one of image, text, audio"),
    "mismatched_rows": ("tiny", mismatched, "422", "inputs differ in their number of rows (image has 2, text has 1)"),
    "non_bytes_image": ("tiny", lambda: [fp32_image(triton)], "422",
                        "image must be a BYTES tensor of encoded files, not FP32"),
    "too_many_rows": ("tiny", lambda: tensors([{"text": "one"}] * (MAX_ROWS + 1), modalities=["text"]), "413",
                      f"text has {MAX_ROWS + 1} rows; the limit is {MAX_ROWS} (FUSIONSERVE_MAX_ITEMS_PER_REQUEST)"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_carry_status_and_message(client, case):
    model, make_inputs, status, message = BAD_INPUTS[case]
    error = refused(lambda: client.infer(model, make_inputs()))
    assert error.status() == status, error.message()
    assert message in error.message(), error.message()


def test_plain_json_request_and_error_shape(live):
    """What curl sends: JSON tensors, JSON answers; errors as the protocol's {"error": "<message>"}."""
    image = base64.b64encode(rows_of()[0]["image"]).decode()
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [image]}],
            "outputs": [{"name": "label"}, {"name": "probabilities"}]}  # fmt: skip
    response = httpx.post(live.base_url + "/v2/models/tiny/versions/1/infer", json=body, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert "total;dur=" in response.headers["server-timing"]
    label, probabilities = response.json()["outputs"]
    assert label["shape"] == [1] and label["data"][0] in LABELS and len(probabilities["data"]) == 4
    body["inputs"][0]["datatype"] = "INT8"
    response = httpx.post(live.base_url + "/v2/models/tiny/infer", json=body, timeout=30)
    assert response.status_code == 422 and without_request_id(response) == {
        "error": "inputs[0].data is not an array of INT8"
    }
    compressed = httpx.post(live.base_url + "/v2/models/tiny/infer", content=b"\x1f\x8b", timeout=30,
                            headers={"content-encoding": "gzip"})  # fmt: skip
    assert compressed.status_code == 415 and "Content-Encoding gzip" in compressed.json()["error"]


async def test_door_refuses_before_the_body_is_read_in_v2_shape(tiny_models):
    async with serving(fast_settings(tiny_models, max_queue_wait_ms=100)) as (app, _):
        _at_capacity(app.state.context.plane, in_flight=500, rate=50.0)  # expected wait 10 s, far over 100 ms
        status, headers, events = await _asgi_post(app, "/v2/models/tiny/infer", b'{"inputs": []}')
        assert status == 429 and "body read" not in events and int(headers["retry-after"]) >= 1
        assert "FUSIONSERVE_MAX_QUEUE_WAIT_MS" in json.loads(events[-1])["error"]
        assert metric(app, "fusionserve_requests_total", model="tiny", endpoint="v2_infer", status="429") == 1
