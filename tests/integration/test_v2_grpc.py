"""KServe V2 over gRPC, proven with the real `tritonclient.grpc` client against a real server on loopback: health,
metadata, a mixed batch equal to v1's answers, outputs selection, bad inputs → the gRPC status and v1's message,
and admission. Auth, drain and the port setting: test_v2_grpc_lifecycle.py; deadlines, cancellation, counting and
undecodable images, as every protocol does them: test_protocols.py."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from service.frontend.api.v2 import grpc_predict_v2_pb2 as pb2
from service.frontend.api.v2 import grpc_predict_v2_pb2_grpc as pb2_grpc
from tests.integration.conftest import fast_settings
from tests.integration.live import ThreadedServer, free_port
from tests.integration.protocols import fp32_image, refused
from tests.integration.protocols import tensors as tensors_of
from tests.integration.test_dataplane import _at_capacity
from tests.integration.test_v2_rest import LABELS, MODALITIES, ROW_SUBSETS, rows_of, v1_answers

MAX_ROWS = 4
BODY_LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def live(tiny_models):
    settings = fast_settings(tiny_models, max_items_per_request=MAX_ROWS, max_upload_bytes=BODY_LIMIT)
    with ThreadedServer(settings.model_copy(update={"grpc_port": free_port()})) as server:
        server.grpc_url = f"127.0.0.1:{server.app.state.context.settings.grpc_port}"
        yield server


@pytest.fixture(scope="module")
def client(live):
    client = triton.InferenceServerClient(live.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def stub(live):
    """fusionserve's own stubs, for what tritonclient does not show: the metadata's parameters, trailing metadata."""
    with grpc.insecure_channel(live.grpc_url) as channel:
        yield pb2_grpc.GRPCInferenceServiceStub(channel)


def tensors(rows: list[dict], modalities=MODALITIES) -> list[triton.InferInput]:
    """One BYTES tensor per modality, an empty element where a row lacks it (sent as raw_input_contents)."""
    return tensors_of(triton, rows, modalities)


def test_health_and_server_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny", "1")
    assert not client.is_model_ready("tiny", "7")
    error = refused(lambda: client.is_model_ready("nope"))
    assert error.status() == "StatusCode.NOT_FOUND" and "model 'nope' not found" in error.message()
    metadata = client.get_server_metadata(as_json=True)
    assert metadata["name"] == "fusionserve" and metadata["version"]
    error = refused(lambda: client.get_model_config("tiny"))  # Triton's, not in KServe's proto
    assert error.status() == "StatusCode.UNIMPLEMENTED"


def test_model_metadata_lists_inputs_outputs_and_labels(client, stub):
    metadata = client.get_model_metadata("tiny", as_json=True)
    assert metadata == client.get_model_metadata("tiny", "1", as_json=True)
    assert (metadata["name"], metadata["versions"], metadata["platform"]) == ("tiny", ["1"], "fusionserve")
    assert metadata["inputs"] == [{"name": m, "datatype": "BYTES", "shape": ["-1"]} for m in MODALITIES]
    outputs = {o["name"]: (o["datatype"], o["shape"]) for o in metadata["outputs"]}
    assert outputs == {
        "probabilities": ("FP32", ["-1", "4"]), "label": ("BYTES", ["-1"]), "fused_embedding": ("FP32", ["-1", "8"]),
        "image_embedding": ("FP32", ["-1", "8"]), "text_embedding": ("FP32", ["-1", "8"]),
        "audio_embedding": ("FP32", ["-1", "8"]), "present": ("BOOL", ["-1", "3"]),
    }  # fmt: skip
    parameters = stub.ModelMetadata(pb2.ModelMetadataRequest(name="tiny")).parameters
    assert json.loads(parameters["labels"].string_param) == LABELS
    assert parameters["embedding_dim"].int64_param == 8 and parameters["version"].string_param == "1"
    error = refused(lambda: client.get_model_metadata("tiny", "7"))
    assert error.status() == "StatusCode.NOT_FOUND" and "'7'" in error.message()


def assert_equals_v1(live, result_of, rows: list[dict], subsets) -> None:
    embed, classify = v1_answers(live, rows)
    probabilities = result_of("probabilities")
    assert probabilities.shape == (len(rows), 4) and probabilities.dtype == np.float32
    answers = zip(subsets, embed["results"], classify["results"], strict=True)
    for row, (subset, v1_embed, v1_classify) in enumerate(answers):
        scores = {entry["label"]: entry["score"] for entry in v1_classify["labels"]}
        np.testing.assert_allclose(probabilities[row], [scores[label] for label in LABELS], atol=1e-5)
        assert result_of("label")[row].decode() == v1_classify["labels"][0]["label"]
        np.testing.assert_allclose(result_of("fused_embedding")[row], v1_embed["fused"], atol=1e-5)
        for modality in MODALITIES:
            expected = v1_embed[modality] if modality in subset else np.zeros(8)  # zeros where absent
            np.testing.assert_allclose(result_of(f"{modality}_embedding")[row], expected, atol=1e-5)
        assert result_of("present")[row].tolist() == [m in subset for m in MODALITIES]


def test_mixed_batch_equals_v1_answers(live, client):
    rows = rows_of()
    result = client.infer("tiny", tensors(rows))
    assert_equals_v1(live, result.as_numpy, rows, ROW_SUBSETS)


def test_typed_contents_answer_as_raw_contents(live, stub):
    """bytes_contents instead of raw_input_contents (what clients built from the proto send)."""
    rows = rows_of()
    request = pb2.ModelInferRequest(model_name="tiny")
    for modality in MODALITIES:
        values = [row.get(modality, b"") for row in rows]
        contents = pb2.InferTensorContents(bytes_contents=[v.encode() if isinstance(v, str) else v for v in values])
        request.inputs.add(name=modality, datatype="BYTES", shape=[len(rows)], contents=contents)
    response = triton.InferResult(stub.ModelInfer(request))  # tritonclient's reader of raw_output_contents
    assert_equals_v1(live, response.as_numpy, rows, ROW_SUBSETS)


def test_outputs_selection_answers_only_those(client):
    wanted = [triton.InferRequestedOutput("label"), triton.InferRequestedOutput("present")]
    result = client.infer("tiny", tensors(rows_of()[:2], modalities=["image", "text"]), model_version="1",
                          outputs=wanted, request_id="req-7")  # fmt: skip
    response = result.get_response(as_json=True)
    assert [o["name"] for o in response["outputs"]] == ["label", "present"]
    assert (response["id"], response["model_version"]) == ("req-7", "1")
    assert result.as_numpy("present").tolist() == [[True, False, False], [False, True, False]]
    assert result.as_numpy("probabilities") is None
    logits = [triton.InferRequestedOutput("logits")]
    error = refused(lambda: client.infer("tiny", tensors(rows_of()[:1]), outputs=logits))
    assert error.status() == "StatusCode.INVALID_ARGUMENT" and "unknown output 'logits'" in error.message()
    top_2 = [triton.InferRequestedOutput("label", class_count=2)]  # Triton's classification extension
    error = refused(lambda: client.infer("tiny", tensors(rows_of()[:1]), outputs=top_2))
    assert error.status() == "StatusCode.INVALID_ARGUMENT" and "classification extension" in error.message()


def mismatched() -> list[triton.InferInput]:
    return tensors(rows_of()[:2], modalities=["image"]) + tensors(rows_of()[:1], modalities=["text"])


BAD_INPUTS = {  # name → (model, inputs, gRPC status, the message it carries)
    "unknown_model": ("nope", lambda: tensors(rows_of()[:1]), "NOT_FOUND", "model 'nope' not found"),
    "empty_row": ("tiny", lambda: tensors([{"text": "one"}, {}]), "INVALID_ARGUMENT",
                  "row[1]: no input: send at least one of image, text, audio"),
    "mismatched_rows": ("tiny", mismatched, "INVALID_ARGUMENT",
                        "inputs differ in their number of rows (image has 2, text has 1)"),
    "non_bytes_image": ("tiny", lambda: [fp32_image(triton)], "INVALID_ARGUMENT",
                        "image must be a BYTES tensor of encoded files, not FP32"),
    "too_many_rows": ("tiny", lambda: tensors([{"text": "one"}] * (MAX_ROWS + 1), modalities=["text"]),
                      "INVALID_ARGUMENT",
                      f"text has {MAX_ROWS + 1} rows; the limit is {MAX_ROWS} (FUSIONSERVE_MAX_ITEMS_PER_REQUEST)"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_carry_status_and_message(client, case):
    model, make_inputs, status, message = BAD_INPUTS[case]
    error = refused(lambda: client.infer(model, make_inputs()))
    assert error.status() == f"StatusCode.{status}", error.message()
    assert message in error.message(), error.message()


def test_message_over_the_body_limit_is_refused_by_grpc(client):
    error = refused(lambda: client.infer("tiny", tensors([{"image": bytes(BODY_LIMIT + 1)}], ["image"])))
    assert error.status() == "StatusCode.RESOURCE_EXHAUSTED"


def test_at_capacity_is_resource_exhausted_with_retry_after(live, stub):
    meter = live.app.state.context.plane.meter("tiny", "1")
    _at_capacity(live.app.state.context.plane, in_flight=500, rate=50.0)  # expected wait 10 s, far over 100 ms
    try:
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(pb2.ModelInferRequest(model_name="tiny"))  # refused at the door: no tensors needed
    finally:
        meter.in_flight -= 500
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "FUSIONSERVE_MAX_QUEUE_WAIT_MS" in caught.value.details()
    assert int(dict(caught.value.trailing_metadata())["retry-after"]) >= 1
