"""Training's video pieces without decoding: the manifest's video fields, the pooling, the rows per segment,
the model over slots and the pooling graph's export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from service import manifest as mf
from training.config import TrainConfig
from training.data.dataset import DatasetError, Example, labels_of, load_dataset
from training.data.splits import VideoPart, make_split
from training.data.video_features import ClipFeatures
from training.data.video_rows import segment_label
from training.errors import ConfigError
from training.export_video import export_pool
from training.model.fused import FusedModel, load_checkpoint, save_checkpoint
from training.model.temporal import TemporalPool

SLOTS = ["text", "image", "audio", "video_frames", "video_audio"]


def _write(tmp_path, lines: list[dict]):
    for name in ("a.mp4", "b.mp4", "x.png"):
        (tmp_path / name).write_bytes(b"media")
    path = tmp_path / "dataset.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_the_manifest_takes_a_video_and_its_annotated_segments(tmp_path):
    path = _write(tmp_path, [
        {"id": "1", "split": "train", "label": "three", "video": "a.mp4", "text": "three",
         "segments": [{"start_s": 0, "end_s": 2, "label": "three"}, {"start_s": 2, "end_s": 4.5, "label": "five"}]},
        {"id": "2", "split": "test", "label": "one", "video": "b.mp4"},
    ])  # fmt: skip
    first, second = load_dataset(path, check_media=False)
    assert first.video == tmp_path / "a.mp4" and first.modalities() == ["text", "video"]
    assert first.segments == ((0.0, 2.0, "three"), (2.0, 4.5, "five"))
    assert second.segments == () and second.modalities() == ["video"]
    assert labels_of([first, second]) == ["five", "one", "three"]  # a segment's label is a class too


def test_bad_video_lines_are_each_reported(tmp_path):
    path = _write(tmp_path, [
        {"id": "1", "split": "train", "label": "a", "image": "x.png", "segments": []},
        {"id": "2", "split": "train", "label": "a", "video": "a.mp4",
         "segments": [{"start_s": 3, "end_s": 1, "label": "b"}]},
        {"id": "3", "split": "train", "label": "a", "video": "a.mp4", "views": {"video": ["b.mp4"]}},
        {"id": "4", "split": "train", "label": "a", "video": "gone.mp4"},
    ])  # fmt: skip
    with pytest.raises(DatasetError) as caught:
        load_dataset(path, check_media=False)
    assert caught.value.problems == [
        "line 1: segments annotate a video: this item has none",
        "line 2: segments[0] must be {start_s, end_s, label} with 0 <= start_s < end_s",
        "line 3: views.video: views are for the item's own image or audio",
        "line 4: missing file gone.mp4",
    ]


def test_video_config_values_are_checked():
    with pytest.raises(ConfigError, match="video_pooling must be one of 'attention', 'mean'"):
        TrainConfig(video_pooling="max")
    with pytest.raises(ConfigError, match="video_overlap_s .4.0. must be >= 0 and below video_segment_s"):
        TrainConfig(video_overlap_s=4.0)


def test_a_segment_takes_the_annotation_it_overlaps_most():
    example = Example("c", "train", "seven", segments=((0.0, 1.5, "one"), (1.5, 4.0, "two")))
    assert segment_label(example, 0.0, 2.0) == "one"  # 1.5 s of "one", 0.5 s of "two"
    assert segment_label(example, 1.0, 4.0) == "two"
    assert segment_label(example, 4.0, 6.0) == "seven"  # nothing annotated there: the item's label


@pytest.mark.parametrize("pooling", ["attention", "mean"])
def test_pooling_ignores_padded_frames_whatever_they_hold(pooling):
    torch.manual_seed(0)
    pool = TemporalPool(8, pooling)
    if pool.score is not None:
        torch.nn.init.normal_(pool.score.weight)  # a trained score, not the zero start
    frames = F.normalize(torch.randn(2, 5, 8), dim=-1)  # [B,K,D]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.float32)
    noisy = frames.clone()
    noisy[mask == 0] = torch.randn(int((mask == 0).sum()), 8) * 1e3
    out = pool(frames, mask)
    assert torch.allclose(out, pool(noisy, mask), atol=1e-6)
    assert torch.allclose(out[1], frames[1, 0], atol=1e-6)  # one frame pools to itself
    assert torch.allclose(out.norm(dim=-1), torch.ones(2), atol=1e-6)
    if pooling == "mean":
        assert torch.allclose(out[0], F.normalize(frames[0, :3].mean(0), dim=0), atol=1e-6)


def test_attention_pooling_starts_as_the_mean():
    frames, mask = F.normalize(torch.randn(1, 4, 8), dim=-1), torch.ones(1, 4)
    assert torch.allclose(TemporalPool(8, "attention")(frames, mask), TemporalPool(8, "mean")(frames, mask))


def _clip(segments: int, frames: list[int], sound: list[bool], k: int = 3) -> ClipFeatures:
    table = np.zeros((segments, k, 4), np.float32)
    for g, count in enumerate(frames):
        table[g, :count] = g + 1.0
    audio = np.array([[g + 10.0] * 2 if s else [0.0] * 2 for g, s in enumerate(sound)], np.float32)
    bounds = np.array([[2.0 * g, 2.0 * g + 2] for g in range(segments)], np.float32)
    return ClipFeatures(table, audio, bounds)


def test_a_video_example_becomes_one_row_per_segment_with_its_other_modalities_repeated():
    examples = [
        Example("t", "test", "a", text="alone"),
        Example("v", "test", "b", text="with a clip", video="v.mp4", segments=((2.0, 4.0, "a"),)),
    ]
    clip = _clip(3, frames=[2, 0, 3], sound=[True, True, False])
    modalities = ["text", "image", "audio", "video_frames", "video_audio"]
    text = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)  # [N_text, F]
    features = {"text": text, "image": np.zeros((0, 4), np.float32), "audio": np.zeros((0, 2), np.float32)}
    split = make_split(examples, modalities, ["a", "b"], features, VideoPart([clip], 3, {"image": 4, "audio": 2}))
    assert split.ids == ["t", "v", "v", "v"] and split.item.tolist() == [0, 1, 1, 1]
    assert split.segment.tolist() == [-1, 0, 1, 2]
    assert split.labels.tolist() == [0, 1, 0, 1]  # the second segment (2-4 s) is annotated "a"
    assert split.present.tolist() == [[1, 0, 0, 0, 0], [1, 0, 0, 1, 1], [1, 0, 0, 0, 1], [1, 0, 0, 1, 0]]
    assert torch.equal(split.features["text"][1:], torch.tensor(text[1]).repeat(3, 1))
    assert split.features["video_frames"].shape == (4, 3, 4)
    assert split.features["video_frames"][3, :, 0].tolist() == [3.0, 3.0, 3.0]
    assert split.features["video_frames"][1, :, 0].tolist() == [1.0, 1.0, 0.0]  # the third frame slot is padding
    assert split.features["video_audio"][:, 0].tolist() == [0.0, 10.0, 11.0, 0.0]


def _video_model(pooling: str = "attention") -> FusedModel:
    torch.manual_seed(0)
    dims = {"image": 6, "text": 5, "audio": 4}
    return FusedModel(["image", "text", "audio", "video_frames", "video_audio"], dims, 3, fusion="gated", dim=8,
                      hidden=16, video_pooling=pooling).eval()  # fmt: skip


def test_frames_and_sound_share_the_image_and_audio_projections():
    model = _video_model()
    assert list(model.projections) == ["image", "text", "audio"] and model.pool is not None
    features = {"image": torch.randn(2, 6), "text": torch.randn(2, 5), "audio": torch.randn(2, 4)}
    features |= {"video_frames": features["image"][:, None].repeat(1, 3, 1), "video_audio": features["audio"]}
    embeddings = model.embed(features)
    assert list(embeddings) == model.modalities
    assert torch.allclose(embeddings["video_frames"], embeddings["image"], atol=1e-6)  # 3 copies of the image
    assert torch.allclose(embeddings["video_audio"], embeddings["audio"])
    assert model(features, torch.ones(2, 5)).logits.shape == (2, 3)


def test_a_model_without_video_has_no_pool_and_its_checkpoint_round_trips(tmp_path):
    plain = FusedModel(["image", "text"], {"image": 6, "text": 5}, 3, dim=8)
    assert plain.pool is None and plain.encoders == ["image", "text"]
    assert not any("pool" in name for name in plain.state_dict())
    model = _video_model("mean")
    save_checkpoint(model, tmp_path / "model.pt", labels=["a", "b", "c"])
    loaded, _ = load_checkpoint(tmp_path / "model.pt")
    assert loaded.modalities == model.modalities and loaded.pool.pooling == "mean"


def test_the_pooling_graph_exports_with_named_dynamic_axes_and_matches_torch(tmp_path):
    model = _video_model()
    torch.nn.init.normal_(model.pool.score.weight)  # not the zero start: the scores must matter
    video = mf.VideoPreprocess(max_frames_per_segment=6)
    spec, diff = export_pool(model, tmp_path / "video_pool.onnx", video)
    assert diff <= 1e-5
    assert spec.pooling == "attention" and spec.preprocess == video and spec.file == "video_pool.onnx"
    assert [(t.name, t.shape) for t in spec.inputs] == [("frame_embeddings", ["batch", "frames", 8]),
                                                         ("frame_mask", ["batch", "frames"])]  # fmt: skip
    assert [(t.name, t.shape) for t in spec.outputs] == [("embedding", ["batch", 8])]


def test_the_slots_follow_the_bundles_encoders():
    from training.data.splits import _slots

    texts = [Example("t", "train", "a", text="a")]
    clips = [Example("v", "train", "a", video="v.mp4")]
    sound_only = VideoPart([_clip(1, frames=[0], sound=[True])], 3, {"image": 4, "audio": 2})
    both = VideoPart([_clip(1, frames=[2], sound=[True])], 3, {"image": 4, "audio": 2})
    assert _slots(texts, {}) == ["text"]
    # the image encoder a clip's frames need brings the image slot (the manifest's Encoders.slots)
    assert _slots(texts + clips, {"train": both}) == ["image", "text", "audio", "video_frames", "video_audio"]
    assert _slots(texts + clips, {"train": sound_only}) == ["text", "audio", "video_audio"]


def test_golden_examples_take_clips_first_and_the_others_as_before():
    from training.export import pick_golden

    items = [Example("a", "test", "x", text="t", video="a.mp4"), Example("b", "test", "x", video="b.mp4"),
             Example("c", "test", "x", text="u"), Example("d", "test", "x", text="w", image="d.png")]  # fmt: skip
    chosen = [(e.id, s) for e, s in pick_golden(items, ["image", "text", "video_frames"], 2)]
    # a clip first (the richest subset some item has), then golden_count others from the items left
    assert chosen == [("a", ("video",)), ("d", ("image", "text")), ("c", ("text",))]
    plain = [(e.id, s) for e, s in pick_golden(items, ["image", "text"], 2)]
    assert plain == [("d", ("image", "text")), ("a", ("text",))]  # without video slots: no clip
