"""The KServe V2 REST codec both ways, checked against tritonclient.utils' own (de)serialisers."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor, triton_to_np_dtype

from service.errors import BadRequest, FusionError, InvalidInput
from service.frontend.api.v2.core import InferResponse, Tensor
from service.frontend.api.v2.rest_codec import HEADER_LENGTH, decode_request, encode_response


def framed(header: dict, *blobs: bytes) -> tuple[bytes, str]:
    text = json.dumps(header).encode()
    return text + b"".join(blobs), str(len(text))


def test_json_tensors_decode_text_as_utf8_and_media_as_base64():
    body = {
        "id": "r1",
        "inputs": [
            {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["héllo", ""]},
            {"name": "image", "shape": [2], "datatype": "BYTES", "data": [base64.b64encode(b"\x89PNG").decode(), ""]},
            {"name": "weights", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]},
        ],
        "outputs": [{"name": "label"}, {"name": "present", "parameters": {"binary_data": True}}],
        "parameters": {"timeout": 5000},
    }
    decoded = decode_request(json.dumps(body).encode(), None)
    text, image, weights = decoded.request.inputs
    assert text.data == ["héllo".encode(), b""] and image.data == [b"\x89PNG", b""]
    assert weights.data.dtype == np.float32 and weights.data.tolist() == [[1, 2], [3, 4]]
    assert (decoded.request.outputs, decoded.request.id) == (["label", "present"], "r1")
    assert decoded.request.parameters["timeout"] == 5000  # judged by the one deadline rule (api/deadline.py)
    assert not decoded.is_binary("label") and decoded.is_binary("present")


def test_binary_tensors_decode_what_tritonclient_serialises():
    elements = np.array([b"\x00\xffraw", b"", b"abc"], dtype=np.object_)
    raw_bytes = serialize_byte_tensor(elements).item()  # a 0-d object array holding the bytes
    numbers = np.arange(6, dtype=np.int64).reshape(2, 3)
    header = {
        "inputs": [
            {"name": "audio", "shape": [3], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw_bytes)}},
            {"name": "ids", "shape": [2, 3], "datatype": "INT64", "parameters": {"binary_data_size": 48}},
        ],
        "parameters": {"binary_data_output": True},
    }
    decoded = decode_request(*framed(header, raw_bytes, numbers.tobytes()))
    audio, ids = decoded.request.inputs
    assert audio.data == [b"\x00\xffraw", b"", b"abc"]  # raw bytes in binary form: no base64
    assert ids.data.tolist() == numbers.tolist() and decoded.is_binary("anything")


BAD_REQUESTS = {  # name → (body, header length, error type, field, message fragment)
    "not_json": (b"{nope", None, BadRequest, "body", "not valid JSON"),
    "header_longer_than_body": (b"{}", "99", BadRequest, HEADER_LENGTH, "at most the body's 2"),
    "no_inputs": (b'{"inputs": []}', None, InvalidInput, "inputs", "at least 1 item"),
    "bad_datatype": (b'{"inputs": [{"name": "t", "shape": [1], "datatype": "STRING", "data": ["a"]}]}', None,
                     InvalidInput, "inputs[0].datatype", "'BYTES'"),
    "negative_dim": (b'{"inputs": [{"name": "t", "shape": [-1], "datatype": "BYTES", "data": []}]}', None,
                     InvalidInput, "inputs[0].shape[0]", "greater than or equal to 0"),
    "shape_mismatch": (b'{"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a"]}]}', None,
                       InvalidInput, "inputs[0]", "1 elements but shape [3] needs 3"),
    "no_data": (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES"}]}', None, InvalidInput,
                "inputs[0].data", "required"),
    "number_in_bytes": (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [7]}]}', None,
                        InvalidInput, "inputs[0].data[0]", "must be a string"),
    "bad_base64": (b'{"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES", "data": ["", "%%"]}]}', None,
                   InvalidInput, "image[1]", "not valid base64"),
    "not_numbers": (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}]}', None,
                    InvalidInput, "inputs[0].data", "not an array of FP32"),
    "classification": (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}], '
                       b'"outputs": [{"name": "label", "parameters": {"classification": 2}}]}', None, InvalidInput,
                       "outputs[0].parameters.classification", "not supported"),
    "binary_flag_not_bool": (b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}], '
                             b'"parameters": {"binary_data_output": "yes"}}', None, InvalidInput,
                             "parameters.binary_data_output", "true or false"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_requests_name_the_field(case):
    body, header_length, kind, field, fragment = BAD_REQUESTS[case]
    with pytest.raises(FusionError) as caught:
        decode_request(body, header_length)
    assert type(caught.value) is kind and caught.value.field == field
    assert fragment in caught.value.message, caught.value.message


def binary_input(size: int, shape=(1,), datatype="BYTES") -> dict:
    spec = {"name": "text", "shape": list(shape), "datatype": datatype, "parameters": {"binary_data_size": size}}
    return {"inputs": [spec]}


@pytest.mark.parametrize(
    "header, blob, fragment",
    [
        (binary_input(3), b"\x05\x00\x00", "4-byte length is cut off"),
        (binary_input(6), b"\x09\x00\x00\x00ab", "declares 9 bytes; 2 remain"),
        (binary_input(10), b"\x01\x00\x00\x00a", "within the 5 bytes left"),
        (binary_input(5), b"\x01\x00\x00\x00a" + b"extra", "5 bytes beyond"),
        (binary_input(4, (2,), "FP32"), b"\x00" * 4, "needs 8"),
        (binary_input(5, (2,)), b"\x01\x00\x00\x00a", "1 elements but shape [2] needs 2"),
    ],
)
def test_bad_binary_framing_is_refused_with_the_reason(header, blob, fragment):
    with pytest.raises(FusionError) as caught:
        decode_request(*framed(header, blob))
    assert caught.value.status in (400, 422) and fragment in caught.value.message, caught.value.message


def response() -> InferResponse:
    probabilities = np.array([[0.25, 0.75], [0.5, 0.5]], np.float32)
    present = np.array([[True, False], [False, True]])
    outputs = [
        Tensor("probabilities", "FP32", [2, 2], probabilities),
        Tensor("label", "BYTES", [2], [b"one", b"zero"]),
        Tensor("present", "BOOL", [2, 2], present),
    ]
    return InferResponse("tiny", "1", outputs, id="r9")


def test_json_response_has_flat_row_major_data():
    decoded = decode_request(b'{"inputs": [{"name": "t", "shape": [0], "datatype": "BYTES", "data": []}]}', None)
    body, headers = encode_response(response(), decoded)
    assert headers == {"content-type": "application/json"}
    parsed = json.loads(body)
    assert (parsed["model_name"], parsed["model_version"], parsed["id"]) == ("tiny", "1", "r9")
    data = {o["name"]: o["data"] for o in parsed["outputs"]}
    assert data == {"probabilities": [0.25, 0.75, 0.5, 0.5], "label": ["one", "zero"],
                    "present": [True, False, False, True]}  # fmt: skip


def test_binary_response_reads_back_with_tritonclient_utils():
    decoded = decode_request(b'{"inputs": [{"name": "t", "shape": [0], "datatype": "BYTES", "data": []}], '
                             b'"parameters": {"binary_data_output": true}}', None)  # fmt: skip
    decoded.binary["probabilities"] = False  # a per-output choice overrides the request's
    body, headers = encode_response(response(), decoded)
    assert headers["content-type"] == "application/octet-stream"
    header_size = int(headers[HEADER_LENGTH])
    outputs = json.loads(body[:header_size])["outputs"]
    assert outputs[0]["data"] == [0.25, 0.75, 0.5, 0.5] and "parameters" not in outputs[0]
    label_size, present_size = (o["parameters"]["binary_data_size"] for o in outputs[1:])
    blob = body[header_size:]
    assert len(blob) == label_size + present_size
    assert deserialize_bytes_tensor(blob[:label_size]).tolist() == [b"one", b"zero"]
    assert np.frombuffer(blob[label_size:], triton_to_np_dtype("BOOL")).tolist() == [True, False, False, True]
