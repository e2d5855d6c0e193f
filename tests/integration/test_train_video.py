"""A tiny dataset with video clips (and texts beside some) trains, evaluates per segment and per clip, and
exports a bundle the server loads: its golden replay — a clip's segments included — matches torch (export
itself fails otherwise), then the real app answers a clip per segment as the golden example says."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

pytest.importorskip("av")

from tests.media_video import write_video  # noqa: E402

pytestmark = pytest.mark.slow
LABELS = {"one": (1, 300.0), "seven": (7, 1500.0)}  # label → (digit drawn, tone)


def _clip(root: Path, name: str, label: str, **options) -> str:
    digit, tone = LABELS[label]
    write_video(root / name, digits=(digit,), tone_hz=tone, seconds=2.0, fps=5, **options)
    return name


def _items(root: Path) -> list[dict]:
    items = []
    for label in LABELS:
        for n in range(4):
            items.append({"id": f"{label}-{n}", "split": "train", "label": label, "text": f"{label} {n}",
                          "video": _clip(root, f"{label}-{n}.mp4", label, seed=n)})  # fmt: skip
        items.append(
            {"id": f"{label}-v", "split": "val", "label": label, "video": _clip(root, f"{label}-v.mp4", label)}
        )
        items.append({"id": f"{label}-t", "split": "test", "label": label, "text": label,
                      "video": _clip(root, f"{label}-t.mp4", label)})  # fmt: skip
        items.append({"id": f"{label}-mute", "split": "test", "label": label,
                      "video": _clip(root, f"{label}-mute.mp4", label, audio=False)})  # fmt: skip
        items.append({"id": f"{label}-dark", "split": "test", "label": label,
                      "video": _clip(root, f"{label}-dark.mp4", label, video=False)})  # fmt: skip
    # a clip showing 1 then 7: its two segments are annotated apart
    write_video(root / "both.mp4", digits=(1, 7), tone_hz=300.0, seconds=4.0, fps=5)
    segments = [{"start_s": 0, "end_s": 2, "label": "one"}, {"start_s": 2, "end_s": 4, "label": "seven"}]
    items.append({"id": "both", "split": "train", "label": "one", "video": "both.mp4", "segments": segments})
    return items


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from training.__main__ import main

    root = tmp_path_factory.mktemp("video")
    (root / "data").mkdir()
    lines = _items(root / "data")
    (root / "data" / "dataset.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    flags = dict(data=root / "data" / "dataset.jsonl", out_dir=root / "run", cache_dir=root / "cache",
                 models_dir=root / "models", name="clips", epochs=3, compare_fusions="false", progress="false",
                 video_segment_s=2.0, golden_count=2, fusion="gated")  # fmt: skip
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in flags.items()]
    for command in ("train", "evaluate", "export"):
        assert main([command, "--config", "default", *argv]) == 0
    return root, root / "models" / "clips" / "1"


def test_the_bundle_declares_the_video_pool_and_fuses_over_the_slots(built):
    from service.manifest import read_manifest

    _, bundle = built
    manifest = read_manifest(bundle / "manifest.json")
    video = manifest.encoders.video
    assert video.file == "video_pool.onnx" and video.pooling == "attention"
    assert (video.preprocess.segment_s, video.preprocess.frames_per_second) == (2.0, 1.0)
    assert manifest.fusion.modalities == ["image", "text", "audio", "video_frames", "video_audio"]
    clips = [g for g in manifest.golden if g.inputs.video_b64]
    assert {tuple(g.inputs.modalities()) for g in clips} == {("video",), ("text", "video")}
    assert all(len(g.outputs.segments) == 1 for g in clips)  # 2 s clips, 2 s segments
    parity = manifest.metrics["parity"]
    assert parity["server_golden_max_abs_diff"] <= 1e-4 and parity["export_max_abs_diff"]["video"] <= 1e-5


def test_evaluation_scores_frames_alone_sound_alone_and_both_per_segment_and_per_clip(built):
    root, bundle = built
    video = json.loads((root / "run" / "evaluation.json").read_text())["evaluation"]["video"]["test"]
    for level in ("segment", "clip"):
        assert set(video[level]) == {"video_frames", "video_audio", "video_frames+video_audio"}
    # the test split: 2 clips with both, 2 without sound, 2 without picture (one segment each)
    assert video["clip"]["video_frames"]["n"] == 4 and video["clip"]["video_audio"]["n"] == 4
    assert video["segment"]["video_frames+video_audio"]["n"] == 2
    assert "## Video" in (bundle / "model_card.md").read_text()


async def test_the_server_answers_a_clip_per_segment_as_torch_did(built):
    import base64

    from service.manifest import read_manifest
    from tests.integration.conftest import fast_settings, serving

    root, bundle = built
    golden = next(g for g in read_manifest(bundle / "manifest.json").golden if g.inputs.modalities() == ["video"])
    clip = base64.b64decode(golden.inputs.video_b64)
    async with serving(fast_settings(root / "models")) as (_, client):
        reply = await client.post("/v1/models/clips/classify?top_k=2", files={"video": ("clip.mp4", clip, "video/mp4")})
    assert reply.status_code == 200, reply.text
    (result,) = reply.json()["results"]
    (segment,) = result["segments"]
    expected = golden.outputs.segments[0]
    assert (segment["start_s"], segment["end_s"]) == pytest.approx((expected.start_s, expected.end_s))
    assert segment["modalities"] == ["video_frames", "video_audio"]
    scores = {row["label"]: row["score"] for row in segment["labels"]}
    labels = read_manifest(bundle / "manifest.json").labels
    assert max(abs(scores[label] - p) for label, p in zip(labels, expected.probabilities, strict=True)) <= 1e-4


def test_a_csv_video_column_becomes_the_manifest_video_and_a_bad_clip_is_reported(tmp_path):
    from training.data.convert import convert

    write_video(tmp_path / "ok.mp4", digits=(1,), seconds=1.0, fps=5)
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64)  # an MP4 header, no streams
    (tmp_path / "items.csv").write_text("id,label,video\na,one,ok.mp4\nb,one,bad.mp4\n")
    written, problems = convert(tmp_path / "items.csv", tmp_path / "out" / "dataset.jsonl")
    assert written == 1 and len(problems) == 1 and problems[0].startswith("row 3: unreadable video bad.mp4: ")
    (item,) = [json.loads(line) for line in (tmp_path / "out" / "dataset.jsonl").read_text().splitlines()]
    assert item["video"] == "../ok.mp4" and item["label"] == "one"
