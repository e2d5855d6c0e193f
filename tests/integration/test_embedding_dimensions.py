"""Smaller vectors and compact encodings over OpenAI `/v1/embeddings` (the `openai` SDK, and httpx for the
object-valued `embedding_types` the SDK's types do not model) and v1 `embed` (httpx), against a real server on
loopback: a `dimensions` answer is the full answer's prefix re-normalised, int8 / uint8 are quantize() of it with
the manifest's ranges, binary its packed sign bits, base64 its little-endian bytes; a dim the bundle was not
trained for is a 422 naming the field and the supported dims (unless truncate=force), checked before any media
is decoded; and GET /v1/models says what a client may ask for. KServe V2: test_embedding_dimensions_v2.py."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest

from service.embedding_types import DTYPES
from tests.bundles import sample_video
from tests.integration.embedding_server import (
    DIM,
    PLAIN,
    PREFIX,
    TEXTS,
    TRAINED,
    b64,
    encoded,
    from_base64,
    item,
    prefix,
    serve,
    v1_embed,
    v1_full,
)
from tests.integration.multiprocess import Server
from tests.integration.protocols import openai_refused as refused

TYPES = ["float", "int8", "uint8", "binary", "ubinary"]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("joint-space-models")) as server:
        yield server


@pytest.fixture(scope="module")
def sdk(live):
    with openai.OpenAI(base_url=live.base_url + "/v1", api_key="unused", max_retries=0) as client:
        yield client


def vectors(response) -> np.ndarray:
    return np.array([entry.embedding for entry in sorted(response.data, key=lambda e: e.index)])


def full_fused(live, texts=TEXTS, model: str = TRAINED) -> np.ndarray:
    return np.array([r["fused"] for r in v1_full(live, [{"text": t} for t in texts], model)])


def openai_post(live, **body) -> httpx.Response:
    return httpx.post(live.base_url + "/v1/embeddings", json=body, timeout=60)


def test_the_sdk_gets_the_renormalised_prefix_as_base64_and_as_floats(live, sdk):
    full = full_fused(live)
    default = sdk.embeddings.create(model=TRAINED, input=TEXTS, dimensions=PREFIX)  # the SDK sends base64, decodes
    floats = sdk.embeddings.create(model=TRAINED, input=TEXTS, dimensions=PREFIX, encoding_format="float")
    for response in (default, floats):
        np.testing.assert_allclose(vectors(response), prefix(full), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors(floats), axis=1), 1.0, atol=1e-6)
    full_dim = sdk.embeddings.create(model=TRAINED, input=TEXTS, dimensions=DIM, encoding_format="float")
    np.testing.assert_allclose(vectors(full_dim), full, atol=1e-6)  # the full dim is always supported


def test_a_dim_not_trained_for_is_422_naming_the_field_and_the_supported_dims(live, sdk):
    body = refused(
        openai.UnprocessableEntityError, lambda: sdk.embeddings.create(model=PLAIN, input="one", dimensions=4)
    )
    assert (body["param"], body["type"]) == ("dimensions", "invalid_request_error")
    assert "dimensions 4 is not one" in body["message"] and "(supported: 8)" in body["message"]
    body = refused(
        openai.UnprocessableEntityError, lambda: sdk.embeddings.create(model=TRAINED, input="a", dimensions=3)
    )
    assert body["param"] == "dimensions" and "(supported: 4, 8)" in body["message"]
    forced = sdk.embeddings.create(model=PLAIN, input=TEXTS, dimensions=3, extra_body={"truncate": "force"})
    np.testing.assert_allclose(vectors(forced), prefix(full_fused(live, model=PLAIN), 3), atol=1e-6)
    too_many = lambda: sdk.embeddings.create(model=PLAIN, input="a", dimensions=9, extra_body={"truncate": "force"})  # noqa: E731
    assert "[1, 8]" in refused(openai.UnprocessableEntityError, too_many)["message"]


def test_embedding_types_are_an_object_keyed_by_type(live):
    full = full_fused(live)
    answer = openai_post(live, model=TRAINED, input=TEXTS, dimensions=PREFIX, embedding_types=TYPES).json()["data"]
    for kind in TYPES:
        got = np.array([entry["embedding"][kind] for entry in answer])
        np.testing.assert_allclose(got, encoded(live, full, kind), atol=1e-6 if kind == "float" else 0)
    ubinary = np.array([entry["embedding"]["ubinary"] for entry in answer], np.uint8)
    signs = np.unpackbits(ubinary, axis=1)[:, :PREFIX].astype(bool)  # 4 dims: one byte, the last 4 bits padding
    assert (signs == (prefix(full) > 0)).all() and not np.unpackbits(ubinary, axis=1)[:, PREFIX:].any()
    as_base64 = openai_post(live, model=TRAINED, input=TEXTS, dimensions=PREFIX, embedding_types=TYPES,
                            encoding_format="base64").json()["data"]  # fmt: skip
    for kind in TYPES:
        for entry, plain in zip(as_base64, answer, strict=True):
            np.testing.assert_array_equal(
                from_base64(entry["embedding"][kind], kind), np.array(plain["embedding"][kind], DTYPES[kind])
            )


def test_the_sdk_passes_embedding_types_through_and_base64_decodes_to_the_floats(live, sdk):
    raw = sdk.embeddings.with_raw_response.create(model=TRAINED, input="zero", extra_body={"embedding_types": ["int8"]})
    (entry,) = raw.http_response.json()["data"]  # the SDK asked for base64: each type's bytes
    assert raw.parse().data[0].embedding == entry["embedding"]  # an object: the SDK leaves it as it came
    np.testing.assert_array_equal(
        from_base64(entry["embedding"]["int8"], "int8"), encoded(live, full_fused(live, ["zero"]), "int8", DIM)[0]
    )
    base64 = openai_post(live, model=TRAINED, input=TEXTS, encoding_format="base64").json()["data"]
    np.testing.assert_allclose([from_base64(e["embedding"]) for e in base64], full_fused(live), atol=1e-6)


def test_embedding_types_the_bundle_cannot_send_are_422(live, sdk):
    int8 = openai_post(live, model=PLAIN, input="one", embedding_types=["binary", "int8"])
    error = int8.json()["error"]
    assert (
        int8.status_code == 422 and error["param"] == "embedding_types[1]" and "calibrated ranges" in error["message"]
    )
    twice = openai_post(live, model=TRAINED, input="one", embedding_types=["int8", "int8"]).json()["error"]
    assert twice["param"] == "embedding_types[1]" and "named twice" in twice["message"]
    unknown = openai_post(live, model=TRAINED, input="one", embedding_types=["int4"])
    assert unknown.status_code == 422 and unknown.json()["error"]["param"].startswith("embedding_types")


def test_dimensions_are_checked_before_any_media_is_decoded(live):
    not_an_image = b64(b"not an image at all")
    broken = [[{"type": "image_url", "image_url": {"url": "data:image/png;base64," + not_an_image}}]]
    error = openai_post(live, model=TRAINED, input=broken, dimensions=3).json()["error"]
    assert error["param"] == "dimensions"  # not the image's 422
    assert openai_post(live, model=TRAINED, input=broken).json()["error"]["param"] == "input[0][0].image_url"
    v1 = v1_embed(live, [{"image": not_an_image}], dimensions=3)
    assert v1.status_code == 422 and v1.json()["error"]["field"] == "dimensions"
    assert v1_embed(live, [{"image": not_an_image}]).json()["error"]["field"] == "inputs[0].image"


def test_v1_embed_truncates_and_encodes_fused_and_every_slot(live):
    items = [item(1, "image", "text", "audio"), item(2, "text")]
    full = v1_full(live, items)
    answer = v1_embed(live, items, dimensions=PREFIX, embedding_types=["int8,binary", "float"]).json()
    assert answer["dim"] == PREFIX
    for got, whole in zip(answer["results"], full, strict=True):
        assert set(got) == set(whole) and got["modalities"] == whole["modalities"]
        for slot in ("fused", *whole["modalities"]):
            assert list(got[slot]) == ["int8", "binary", "float"]
            np.testing.assert_allclose(got[slot]["float"], prefix(whole[slot]), atol=1e-6)
            assert got[slot]["int8"] == encoded(live, [whole[slot]], "int8")[0].tolist()
            assert got[slot]["binary"] == encoded(live, [whole[slot]], "binary")[0].tolist()
    base64 = v1_embed(live, items, dimensions=PREFIX, encoding_format="base64").json()["results"]
    np.testing.assert_allclose(from_base64(base64[0]["audio"]), prefix(full[0]["audio"]), atol=1e-6)


def test_v1_refuses_untrained_dims_unless_forced(live):
    refused_ = v1_embed(live, [{"text": "one"}], PLAIN, dimensions=4)
    error = refused_.json()["error"]
    assert (refused_.status_code, error["field"], error["type"]) == (422, "dimensions", "invalid_input")
    assert "(supported: 8)" in error["message"] and "truncate='force'" in error["message"]
    forced = v1_embed(live, [{"text": "one"}], PLAIN, dimensions=5, truncate="force").json()
    assert forced["dim"] == 5
    np.testing.assert_allclose(forced["results"][0]["fused"], prefix(full_fused(live, ["one"], PLAIN), 5)[0], atol=1e-6)
    bad_type = v1_embed(live, [{"text": "one"}], embedding_types="float,int4").json()["error"]
    assert bad_type["field"] == "embedding_types[1]" and "'int4' is not one of" in bad_type["message"]
    assert v1_embed(live, [{"text": "one"}], truncate="yes").status_code == 422


def test_a_videos_segments_are_truncated_too(live, sdk):
    clip = sample_video(seed=5)
    files = {"video": ("clip.mp4", clip, "video/mp4")}
    url = f"{live.base_url}/v1/models/{TRAINED}/embed"
    (full,) = httpx.post(url, files=files, timeout=60).json()["results"]
    (short,) = httpx.post(url, files=files, params={"dimensions": PREFIX}, timeout=60).json()["results"]
    assert len(short["segments"]) == len(full["segments"]) >= 2
    for got, whole in zip(short["segments"], full["segments"], strict=True):
        np.testing.assert_allclose(got["fused"], prefix(whole["fused"]), atol=1e-6)
        for slot, vector in whole["embeddings"].items():
            np.testing.assert_allclose(got["embeddings"][slot], prefix(vector), atol=1e-6)
    part = {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + b64(clip)}}
    answer = openai_post(live, model=TRAINED, input=[[part]], dimensions=PREFIX, embedding_types=["int8"]).json()
    segments = answer["data"][0]["segments"]
    expected = encoded(live, [s["fused"] for s in full["segments"]], "int8")
    assert [s["embedding"]["int8"] for s in segments] == expected.tolist()


def test_the_models_description_says_the_dims_types_and_zero_shot_calibration(live):
    (trained,) = httpx.get(f"{live.base_url}/v1/models/{TRAINED}").json()["versions"]
    assert trained["dimensions"] == [PREFIX, DIM] and trained["embedding_types"] == TYPES
    assert trained["zero_shot"]["calibrated"] is True and trained["zero_shot"]["temperature"] == 0.05
    assert {"ece", "ece_uncalibrated", "accuracy", "template", "n", "split"} <= set(trained["zero_shot"])
    (plain,) = httpx.get(f"{live.base_url}/v1/models/{PLAIN}").json()["versions"]
    assert plain["dimensions"] == [DIM] and plain["embedding_types"] == ["float", "binary", "ubinary"]
    assert plain["zero_shot"] == {"calibrated": False, "temperature": 0.01}


@pytest.mark.slow
def test_a_front_end_and_an_engine_answer_what_one_process_does(live, tmp_path):
    """FUSIONSERVE_WORKERS=1: the front-end reads the manifest's joint space itself (the follower's bundle)."""
    text = [{"text": "a"}]
    v2 = {
        "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["zero"]}],
        "parameters": {"dimensions": PREFIX, "embedding_type": "binary"},
        "outputs": [{"name": "fused_embedding"}],
    }
    calls = {"openai": ("/v1/embeddings", {"model": TRAINED, "input": TEXTS, "dimensions": PREFIX,
                                           "embedding_types": TYPES}),
             "v1": (f"/v1/models/{TRAINED}/embed?dimensions={PREFIX}&embedding_types=int8", {"inputs": text}),
             "v2": (f"/v2/models/{TRAINED}/infer", v2),
             "refused": ("/v1/embeddings", {"model": PLAIN, "input": "a", "dimensions": 4})}  # fmt: skip
    split = Server(live.app.state.context.settings.model_dir, tmp_path / "split.log", workers=1)
    try:
        got = {name: httpx.post(split.url + path, json=body, timeout=30) for name, (path, body) in calls.items()}
        (described,) = httpx.get(f"{split.url}/v1/models/{TRAINED}").json()["versions"]
    finally:
        split.stop()
    want = {name: httpx.post(live.base_url + path, json=body, timeout=30) for name, (path, body) in calls.items()}
    for kind in TYPES:
        np.testing.assert_allclose(*([e["embedding"][kind] for e in r.json()["data"]] for r in (got["openai"],
                                   want["openai"])), atol=1e-6)  # fmt: skip
    assert got["v1"].json()["results"] == want["v1"].json()["results"] and got["v1"].json()["dim"] == PREFIX
    assert got["v2"].json()["outputs"] == want["v2"].json()["outputs"]
    assert got["v2"].json()["outputs"][0]["datatype"] == "INT8"
    assert got["refused"].status_code == 422
    assert got["refused"].json()["error"]["message"] == want["refused"].json()["error"]["message"]
    assert (described["dimensions"], described["embedding_types"]) == ([PREFIX, DIM], TYPES)
    assert described["zero_shot"]["calibrated"] is True
