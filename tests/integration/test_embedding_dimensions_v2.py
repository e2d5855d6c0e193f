"""Smaller vectors and compact encodings over KServe V2, REST and gRPC, with the real tritonclient.http and
tritonclient.grpc: the request parameters `dimensions`, `truncate` and `embedding_type` make every embedding
output (fused, per slot, per segment) the re-normalised prefix in that type — FP32, INT8 / UINT8 (quantize() with
the manifest's ranges) or packed sign bits [., ceil(d/8)] — zeros where a row lacks the slot; refusals name
`parameters.<field>` and the supported dims; the metadata's parameters say what a client may ask for. OpenAI and
v1: test_embedding_dimensions.py."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from service.frontend.api.v2 import grpc_predict_v2_pb2 as pb2
from service.frontend.api.v2 import grpc_predict_v2_pb2_grpc as pb2_grpc
from tests.bundles import sample_inputs, sample_video
from tests.integration.embedding_server import DIM, PLAIN, PREFIX, TRAINED, encoded, item, prefix, serve, v1_full
from tests.integration.protocols import refused, tensors

ROWS = [{"text": "one two"}, {"image": sample_inputs(3)["image"]}]  # row 0 has no image, row 1 no text
DATATYPES = {"float": "FP32", "int8": "INT8", "uint8": "UINT8", "binary": "INT8", "ubinary": "UINT8"}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("joint-space-models-v2")) as server:
        yield server


@pytest.fixture(scope="module", params=["http", "grpc"])
def client(request, live):
    """(tritonclient module, its client) for REST and for gRPC."""
    if request.param == "http":
        with triton_http.InferenceServerClient(live.base_url.removeprefix("http://"), network_timeout=60) as c:
            yield triton_http, c
    else:
        c = triton_grpc.InferenceServerClient(live.grpc_url)
        yield triton_grpc, c
        c.close()


@pytest.fixture(scope="module")
def full(live) -> list[dict]:
    """v1's full-dim answer for ROWS."""
    return v1_full(live, [item(3, "image") if "image" in row else row for row in ROWS])


def infer(client, rows=ROWS, model: str = TRAINED, **parameters):
    module, c = client
    modalities = [m for m in ("image", "text", "audio", "video") if any(m in row for row in rows)]
    return c.infer(model, tensors(module, rows, modalities), parameters=parameters or None)


@pytest.mark.parametrize("kind", ["float", "int8", "uint8", "binary", "ubinary"])
def test_every_embedding_output_is_the_prefix_in_the_asked_type(live, client, full, kind):
    result = infer(client, dimensions=PREFIX, embedding_type=kind)
    width = 1 if kind.endswith("binary") else PREFIX
    fused = result.as_numpy("fused_embedding")
    assert result.get_output("fused_embedding") is not None and fused.shape == (2, width)
    expected = encoded(live, [r["fused"] for r in full], kind)
    np.testing.assert_allclose(fused, expected, atol=1e-6 if kind == "float" else 0)
    assert fused.dtype == expected.dtype
    image, text = result.as_numpy("image_embedding"), result.as_numpy("text_embedding")
    np.testing.assert_allclose(image[1], encoded(live, [full[1]["image"]], kind)[0], atol=1e-6)
    np.testing.assert_allclose(text[0], encoded(live, [full[0]["text"]], kind)[0], atol=1e-6)
    assert not image[0].any() and not text[1].any()  # the rows without that slot: zeros, whatever the type
    datatypes = output_datatypes(client, result)
    assert datatypes["fused_embedding"] == datatypes["text_embedding"] == DATATYPES[kind]
    assert datatypes["probabilities"] == "FP32"


def output_datatypes(client, result) -> dict[str, str]:
    module, _ = client
    response = result.get_response(as_json=True) if module is triton_grpc else result.get_response()
    return {o["name"]: o["datatype"] for o in response["outputs"]}


def test_a_dim_not_trained_for_is_refused_naming_the_parameter_unless_forced(live, client):
    error = refused(lambda: infer(client, [{"text": "one"}], PLAIN, dimensions=4))
    assert "parameters.dimensions 4 is not one" in error.message() and "(supported: 8)" in error.message()
    assert "parameters.truncate='force'" in error.message()
    assert error.status() in ("422", "StatusCode.INVALID_ARGUMENT")
    forced = infer(client, [{"text": "one"}], PLAIN, dimensions=3, truncate="force").as_numpy("fused_embedding")
    plain = v1_full(live, [{"text": "one"}], PLAIN)
    np.testing.assert_allclose(forced, prefix([plain[0]["fused"]], 3), atol=1e-6)
    assert "(supported: 4, 8)" in refused(lambda: infer(client, dimensions=5)).message()


BAD_PARAMETERS = {  # name → (parameters, what the message says)
    "int8_without_ranges": ({"embedding_type": "int8"}, "parameters.embedding_type 'int8' needs calibrated ranges"),
    "unknown_type": ({"embedding_type": "int4"}, "parameters.embedding_type 'int4' is not one of float"),
    "cohere_plural": ({"embedding_types": "int8"}, "send one embedding_type"),
    "truncate_yes": ({"dimensions": 4, "truncate": "yes"}, "parameters.truncate must be 'force'"),
    "dimensions_text": ({"dimensions": "four"}, "parameters.dimensions must be an integer"),
    "dimensions_zero": ({"dimensions": 0, "truncate": "force"}, "parameters.dimensions must be an integer in [1, 8]"),
}


@pytest.mark.parametrize("case", BAD_PARAMETERS)
def test_bad_parameters_are_refused_naming_them(client, case):
    parameters, message = BAD_PARAMETERS[case]
    assert message in refused(lambda: infer(client, [{"text": "one"}], PLAIN, **parameters)).message()


def test_a_videos_segment_embeddings_are_truncated_too(live, client):
    clip = sample_video(seed=6)
    whole, short = (infer(client, [{"video": clip}], **options) for options in ({}, {"dimensions": PREFIX}))
    segments = whole.as_numpy("segment_fused_embedding")
    assert segments.shape[1] == DIM and short.as_numpy("segment_fused_embedding").shape == (len(segments), PREFIX)
    np.testing.assert_allclose(short.as_numpy("segment_fused_embedding"), prefix(segments), atol=1e-6)
    frames = whole.as_numpy("segment_video_frames_embedding")
    np.testing.assert_allclose(short.as_numpy("segment_video_frames_embedding"), prefix(frames), atol=1e-6)
    binary = infer(client, [{"video": clip}], embedding_type="ubinary").as_numpy("segment_fused_embedding")
    assert binary.shape == (len(segments), 1) and (np.unpackbits(binary, axis=1) == (segments > 0)).all()


def test_metadata_parameters_say_the_dims_types_and_zero_shot_calibration(live):
    with triton_http.InferenceServerClient(live.base_url.removeprefix("http://")) as c:
        trained, plain = (c.get_model_metadata(m)["parameters"] for m in (TRAINED, PLAIN))
    assert trained["dimensions"] == [PREFIX, DIM] and trained["embedding_types"][1:3] == ["int8", "uint8"]
    assert trained["zero_shot_calibrated"] is True and trained["zero_shot_temperature"] == 0.05
    assert "zero_shot_ece" in trained and "zero_shot_ece" not in plain
    assert plain["dimensions"] == [DIM] and plain["embedding_types"] == ["float", "binary", "ubinary"]
    assert plain["zero_shot_calibrated"] is False and plain["zero_shot_temperature"] == 0.01
    with grpc.insecure_channel(live.grpc_url) as channel:  # fusionserve's field 6, which tritonclient does not show
        parameters = pb2_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(pb2.ModelMetadataRequest(name=TRAINED))
    assert json.loads(parameters.parameters["dimensions"].string_param) == [PREFIX, DIM]
    assert parameters.parameters["zero_shot_calibrated"].bool_param is True
    assert parameters.parameters["zero_shot_temperature"].double_param == 0.05
