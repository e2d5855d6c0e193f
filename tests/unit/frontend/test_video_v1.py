"""A video item's answers in v1 and OpenAI JSON (service/frontend/api/segments.py, routes.py, openai_embeddings.py):
segments in time order with their slots, evidence named by slot, OpenAPI models that accept what is written."""

from __future__ import annotations

import numpy as np
import orjson
import pybase64

from service.frontend.api import routes
from service.frontend.api.openai_embeddings import EmbeddingOptions, EmbeddingResponse, respond
from service.frontend.api.schemas import ClassifyResponse, EmbedResponse
from service.frontend.cycle import Admitted
from tests.unit.frontend.video_results import inference, state, text_result, video_result


def body(respond_fn, *results) -> dict:
    """What the route writes, read back as a client reads it (orjson, numpy included)."""
    return orjson.loads(orjson.dumps(respond_fn(state(), inference(*results)), option=orjson.OPT_SERIALIZE_NUMPY))


def test_classify_answers_each_segment_with_its_top_labels_and_slots():
    text, video = body(routes._classify_body(2, False), text_result(), video_result())["results"]
    assert "segments" not in text  # only a video item has segments
    assert video["modalities"] == ["text", "video"] and video["labels"][0]["label"] == "dog"
    segments = video["segments"]
    assert [(s["start_s"], s["end_s"]) for s in segments] == [(0, 2), (2, 4), (4, 5.5)]
    assert [s["labels"][0]["label"] for s in segments] == ["dog", "owl", "cat"]
    assert [len(s["labels"]) for s in segments] == [2, 2, 2]  # top_k holds per segment too
    assert [s["modalities"] for s in segments] == [["video_frames"], [], ["video_frames"]]
    assert all("evidence" not in s for s in segments)
    ClassifyResponse.model_validate(body(routes._classify_body(2, False), text_result(), video_result()))


def test_explain_names_slots_for_the_clip_and_each_segment():
    (video,) = body(routes._classify_body(1, True), video_result())["results"]
    assert [(e["modality"], e["label"], e["agrees"]) for e in video["evidence"]] == [
        ("text", "cat", False), ("video_frames", "dog", True)]  # fmt: skip
    first, silent, last = video["segments"]
    # a segment's evidence: its own frames' head, and the item's other inputs (fused beside them)
    assert [(e["modality"], e["label"]) for e in first["evidence"]] == [("text", "cat"), ("video_frames", "dog")]
    assert first["agreement"] is False
    assert [e["modality"] for e in silent["evidence"]] == ["text"]  # no frames there: no video_frames evidence
    assert [(e["modality"], e["label"], e["agrees"]) for e in last["evidence"]] == [
        ("text", "cat", True), ("video_frames", "owl", False)]  # fmt: skip
    ClassifyResponse.model_validate(body(routes._classify_body(1, True), video_result()))


def test_embed_answers_the_clips_slots_and_each_segments_embeddings():
    written = body(routes._embed_body, text_result(), video_result())
    text, video = written["results"]
    assert set(text) == {"modalities", "fused", "text"}
    assert np.allclose(video["video_frames"], video_result().embeddings["video_frames"])
    segments = video["segments"]
    assert [sorted(s["embeddings"]) for s in segments] == [["video_frames"], [], ["video_frames"]]
    assert np.allclose(segments[2]["embeddings"]["video_frames"], video_result().segments.embeddings["video_frames"][2])
    assert np.allclose([s["fused"] for s in segments], video_result().segments.fused)
    parsed = EmbedResponse.model_validate(written)  # the OpenAPI model declares the slots and the segments
    assert parsed.results[1].video_frames is not None and len(parsed.results[1].segments) == 3


def test_openai_data_gains_segments_in_the_requested_encoding():
    admitted = Admitted("clips", state())
    done = inference(text_result(), video_result())
    floats = respond(EmbeddingOptions(model="clips"), admitted, done)
    assert "segments" not in floats["data"][0] and floats["usage"]["prompt_tokens"] == 6
    segments = floats["data"][1]["segments"]
    assert [(s["start_s"], s["end_s"], s["modalities"]) for s in segments][1] == (2, 4, [])
    assert np.allclose([s["embedding"] for s in segments], video_result().segments.fused)
    encoded = respond(EmbeddingOptions(model="clips", encoding_format="base64"), admitted, done)
    first = encoded["data"][1]["segments"][0]["embedding"]  # base64 of little-endian f32, as the item's own
    assert np.allclose(np.frombuffer(pybase64.b64decode(first), "<f4"), video_result().segments.fused[0])
    EmbeddingResponse.model_validate(orjson.loads(orjson.dumps(encoded, option=orjson.OPT_SERIALIZE_NUMPY)))
