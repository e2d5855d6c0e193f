"""service/manifest.py's video contract: a video encoder needs the image or the audio encoder, fusion takes the
slots of the encoders (video_frames with the image encoder, video_audio with the audio encoder), golden
examples of a video are keyed by slot and alone may carry segments; a test bundle with video satisfies it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.manifest import MODALITIES, Encoders, Manifest, VideoPreprocess, read_manifest
from tests.bundles import build_bundle
from tests.unit.test_manifest import valid

POOL = {
    "file": "video_pool.onnx",
    "inputs": [{"name": "frame_embeddings", "dtype": "float32", "shape": ["batch", "frames", 4]},
               {"name": "frame_mask", "dtype": "float32", "shape": ["batch", "frames"]}],
    "outputs": [{"name": "embedding", "dtype": "float32", "shape": ["batch", 4]}],
}  # fmt: skip
AUDIO = {
    "file": "audio_encoder.onnx",
    "inputs": [{"name": "input_features", "dtype": "float32", "shape": ["batch", 80, "frames"]},
               {"name": "frame_mask", "dtype": "float32", "shape": ["batch", "frames"]}],
    "outputs": [{"name": "embedding", "dtype": "float32", "shape": ["batch", 4]}],
}  # fmt: skip


def with_video(slots: list[str], audio: bool = True) -> dict:
    data = valid()
    data["encoders"]["video"] = POOL
    data["files"]["video_pool.onnx"] = "3" * 64
    if audio:
        data["encoders"]["audio"] = AUDIO
        data["files"]["audio_encoder.onnx"] = "4" * 64
    embedding = {"dtype": "float32", "shape": ["batch", 4]}
    data["fusion"]["modalities"] = slots
    data["fusion"]["inputs"] = [{"name": f"{s}_embedding", **embedding} for s in slots]
    data["fusion"]["inputs"].append({"name": "present", "dtype": "float32", "shape": ["batch", len(slots)]})
    return data


def test_the_slots_follow_the_encoders():
    assert Encoders.model_validate({"text": valid()["encoders"]["text"], "video": POOL}).slots() == ["text"]
    manifest = Manifest.model_validate(with_video(["text", "audio", "video_audio"]))
    assert (
        manifest.modalities() == ["text", "audio", "video"] and manifest.encoders.slots() == manifest.fusion.modalities
    )
    assert "video_pool.onnx" in manifest.graph_files()


def test_fusion_must_take_exactly_the_slots():
    with pytest.raises(ValidationError, match="the encoders' slots"):
        Manifest.model_validate(with_video(["text", "audio"]))  # the video's sound track has no slot
    with pytest.raises(ValidationError, match="the encoders' slots"):
        Manifest.model_validate(with_video(["text", "audio", "video_frames", "video_audio"]))  # no image encoder


def test_a_video_encoder_needs_the_image_or_the_audio_encoder():
    data = with_video([], audio=False)
    data["encoders"].pop("text")
    with pytest.raises(ValidationError, match="image encoder or the audio encoder"):
        Manifest.model_validate(data)


def test_golden_segments_and_slots_belong_to_a_video_input():
    data = with_video(["text", "audio", "video_audio"])
    segment = {"start_s": 0.0, "end_s": 1.0, "probabilities": [0.5, 0.5], "fused": [0, 0, 0, 1]}
    data["golden"][0]["outputs"]["segments"] = [segment]
    with pytest.raises(ValidationError, match="segments need a video input"):
        Manifest.model_validate(data)
    data["golden"][0]["inputs"]["video_b64"] = "AAAA"
    data["golden"][0]["outputs"]["embeddings"] = {"video_audio": [0, 0, 1, 0]}
    assert Manifest.model_validate(data).golden[0].outputs.segments[0].end_s == 1.0
    data["golden"][0]["outputs"]["embeddings"] = {"video": [0, 0, 1, 0]}  # a modality, not a slot
    with pytest.raises(ValidationError):
        Manifest.model_validate(data)


def test_overlap_stays_below_the_segment():
    with pytest.raises(ValidationError, match="must be below segment_s"):
        VideoPreprocess(segment_s=2.0, overlap_s=2.0)


def test_a_test_bundle_with_video_satisfies_the_contract(tmp_path):
    directory = build_bundle(tmp_path, modalities=MODALITIES, golden=False)
    manifest = read_manifest(directory / "manifest.json")
    assert manifest.fusion.modalities == ["image", "text", "audio", "video_frames", "video_audio"]
    assert manifest.fusion.output("modality_logits").shape == ["batch", 5, 4]
    assert manifest.encoders.video.pooling == "attention" and (directory / "video_pool.onnx").exists()
