"""A video row over KServe V2 (service/frontend/api/v2): the request parameters reach every row's options, the
segment_* outputs stack every video row's segments, and tritonclient's own readers (http and grpc) read them."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from service.errors import InvalidInput
from service.frontend.api.v2 import grpc_codec, rest_codec
from service.frontend.api.v2.core import InferRequest, InferResponse, Tensor, raw_items
from service.frontend.api.v2.outputs import output, output_specs
from service.modalities.video import segmentation
from tests.unit.frontend.video_results import DIM, LABELS, inference, text_result, video_manifest, video_result

SEGMENT_OUTPUTS = ["segment_item", "segment_bounds", "segment_probabilities", "segment_label",
                   "segment_fused_embedding", "segment_video_frames_embedding", "segment_present"]  # fmt: skip


def test_a_video_models_outputs_name_its_slots_and_segments():
    names = [spec["name"] for spec in output_specs(video_manifest())]
    assert names == ["probabilities", "label", "fused_embedding", "image_embedding", "text_embedding",
                     "video_frames_embedding", "present", *SEGMENT_OUTPUTS]  # fmt: skip


def responses(names: list[str]) -> InferResponse:
    """Rows: text only, text + 3-segment video, text only again."""
    done = inference(text_result(), video_result(), text_result())
    return InferResponse("clips", "1", [output(name, video_manifest(), done) for name in names], "r1")


def check_segments(read) -> None:
    """`read(name)` → the numpy array a client reads for that output."""
    assert read("segment_item").tolist() == [1, 1, 1]  # every segment of row 1, none of rows 0 and 2
    assert read("segment_bounds").tolist() == [[0, 2], [2, 4], [4, 5.5]]
    assert np.allclose(read("segment_probabilities"), video_result().segments.probabilities)
    labels = [label if isinstance(label, str) else label.decode() for label in read("segment_label")]  # JSON: str
    assert labels == ["dog", "owl", "cat"]
    frames = read("segment_video_frames_embedding")
    assert frames.shape == (3, DIM) and not frames[1].any()  # zeros where the segment had no frames
    assert read("segment_present").tolist() == [[True, False], [False, False], [True, False]]
    assert read("present").tolist() == [[False, True, False], [False, True, True], [False, True, False]]
    assert read("video_frames_embedding").shape == (3, DIM) and not read("video_frames_embedding")[0].any()


def test_tritonclient_http_reads_the_segment_outputs_json_and_binary():
    names = [*SEGMENT_OUTPUTS, "present", "video_frames_embedding"]
    for binary in (False, True):
        decoded = rest_codec.DecodedRequest(InferRequest([]), binary_default=binary)
        body, headers = rest_codec.encode_response(responses(names), decoded)
        length = headers.get(rest_codec.HEADER_LENGTH)
        result = triton_http.InferResult.from_response_body(body, header_length=length and int(length))
        check_segments(result.as_numpy)


def test_tritonclient_grpc_reads_the_segment_outputs():
    message = grpc_codec.encode_response(responses([*SEGMENT_OUTPUTS, "present", "video_frames_embedding"]))
    check_segments(triton_grpc.InferResult(message).as_numpy)


def test_segment_outputs_are_empty_when_no_row_has_video():
    done = inference(text_result())
    shapes = {name: output(name, video_manifest(), done).shape for name in SEGMENT_OUTPUTS}
    assert shapes["segment_item"] == [0] and shapes["segment_probabilities"] == [0, len(LABELS)]
    bounds = output("segment_bounds", video_manifest(), done)
    message = grpc_codec.encode_response(InferResponse("clips", "1", [bounds]))
    assert triton_grpc.InferResult(message).as_numpy("segment_bounds").shape == (0, 2)


def video_request(parameters: dict) -> InferRequest:
    return InferRequest([Tensor("video", "BYTES", [2], [b"clip-one", b"clip-two"])], parameters=parameters)


def test_request_parameters_segment_every_row_and_errors_name_them():
    items = raw_items(video_request({"segment_s": 1.5, "overlap_s": 0.5, "timeout": 9}), video_manifest(), 8)
    assert [item.options for item in items] == [{"segment_s": 1.5, "overlap_s": 0.5}] * 2
    spec = video_manifest().encoder("video").preprocess
    assert segmentation(items[1], spec, None) == (1.5, 0.5)
    (bad,) = raw_items(video_request({"segment_s": "soon"}), video_manifest(), 8)[:1]
    with pytest.raises(InvalidInput, match=r"parameters\.segment_s must be a number") as caught:
        segmentation(bad, spec, None)
    assert caught.value.field == "parameters.segment_s"


def test_grpc_parameters_arrive_as_their_types():
    message = triton_grpc.service_pb2.ModelInferRequest(model_name="clips")
    grpc_codec.set_parameters(message.parameters, {"segment_s": 2.0, "overlap_s": 1})
    values = grpc_codec.parameter_values(message.parameters)
    assert values == {"segment_s": 2.0, "overlap_s": 1}
    (item, _) = raw_items(video_request(values), video_manifest(), 8)
    assert segmentation(item, video_manifest().encoder("video").preprocess, None) == (2.0, 1.0)
