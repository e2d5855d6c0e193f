"""tridigits' video clips: the streams each subset has, moving and covered digits, words inside their shots,
annotated segments, held-out voices, the clean clips, deterministic bytes."""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest

from service.manifest import VideoPreprocess
from service.preprocess.video_plan import sample_times, segment_bounds
from training.config import load_config
from training.data.demo_clips import CLEAN_GROUPS, plan_clean_clips, plan_clips
from training.data.demo_jobs import DemoConfig, voices
from training.data.demo_media import SAMPLE_RATE, AudioJob, ImageJob
from training.data.demo_video import MAX_SHIFT, Shot, VideoJob, frames, sheet, sound_track
from training.data.demo_views import CHECK_VOICES
from training.data.demo_write import make_item

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
CFG = DemoConfig()
SCALE = 0.1  # 70 clips


@pytest.fixture(scope="module")
def clips() -> list[dict]:
    return plan_clips(CFG, 5, SCALE)


def write(root: Path, item: dict) -> Path:
    (root / Path(item["row"]["video"]).parent).mkdir(parents=True, exist_ok=True)
    make_item((root, item["jobs"]))
    return root / item["row"]["video"]


def subset(item: dict) -> str:
    job = item["jobs"][0][1]
    return "+".join(name for name, present in (("frames", job.picture), ("sound", job.sound)) if present)


def a_one() -> Shot:
    digit = np.zeros((8, 8))
    digit[1:7, 3:5] = 16.0  # a "1"
    image = ImageJob(pixels=sheet(digit), size=96, blur=0.0, noise=0.0, patches=(), shift=(0.0, 0.0), contrast=1.0)
    return Shot(image=image, drift=(0.05, 0.0), shake=0.0, cover=None, speech=None)


def ink_centre_x(frame: np.ndarray) -> float:
    ink = 255.0 - frame.astype(np.float64)  # dark ink on light paper
    return float((ink.sum(axis=0) * np.arange(frame.shape[1])).sum() / ink.sum())


def test_every_video_subset_occurs_and_its_streams_are_what_it_says(clips: list[dict], tmp_path: Path) -> None:
    assert set(Counter(subset(c) for c in clips)) == {"frames+sound", "frames", "sound"}
    for name in ("frames+sound", "frames", "sound"):
        item = next(c for c in clips if subset(c) == name)
        shots = len(item["jobs"][0][1].shots)
        with av.open(str(write(tmp_path, item))) as container:
            kinds = sorted(s.type for s in container.streams)
            assert kinds == sorted({"frames": ["video"], "sound": ["audio"]}.get(name, ["audio", "video"]))
            assert container.duration / 1e6 == pytest.approx(3.0 * shots, abs=0.1)  # 3 s a shot
            if "frames" in name:
                video = container.streams.video[0]
                assert (video.codec_context.name, video.width, video.height) == ("h264", 96, 96)
                assert sum(1 for _ in container.decode(video=0)) == shots * 3 * CFG.video_fps
            if "sound" in name:
                assert container.streams.audio[0].codec_context.name == "aac"


def test_the_digit_drifts_and_the_cover_hides_it_for_its_stretch_only() -> None:
    shot = a_one()
    pictures = frames(VideoJob(shots=(shot,), shot_s=3.0, fps=8, size=96), np.random.default_rng(0))
    assert len(pictures) == 24 and pictures[0].shape == (96, 96)
    moved = ink_centre_x(pictures[-1]) - ink_centre_x(pictures[0])
    assert moved == pytest.approx(0.05 * (23 / 8) * 96, abs=2.0)  # drift x elapsed seconds x side, in pixels
    far = replace(shot, drift=(1.0, 0.0))  # would leave the frame in a second: held at the sheet's border
    last = frames(VideoJob(shots=(far,), shot_s=3.0, fps=8, size=96), np.random.default_rng(0))[-1]
    assert ink_centre_x(last) - 48 == pytest.approx(MAX_SHIFT * 96, abs=2.0) and (last[:, -2:] == 255).all()
    covered = replace(shot, cover=(1.0, 2.0, 0.2, 0.2, 0.6, 0.5))  # 1 s to 2 s, a grey square over the middle
    seen = frames(VideoJob(shots=(covered,), shot_s=3.0, fps=8, size=96), np.random.default_rng(0))
    middle = [bool((f[30:60, 30:60] == 128).all()) for f in seen]  # grey 0.5 → 128
    assert middle == [1.0 <= k / 8 < 2.0 for k in range(24)]


def test_each_word_is_spoken_inside_its_own_shot() -> None:
    speech = AudioJob(word="seven", voice="en+m1", speed=160, pitch=50, snr_db=None, noise_colour=0.0,
                      lead_s=0.2, tail_s=0.0)  # fmt: skip
    shots = (Shot(None, (0.0, 0.0), 0.0, None, speech), Shot(None, (0.0, 0.0), 0.0, None, replace(speech, lead_s=1.5)))
    track = sound_track(VideoJob(shots=shots, shot_s=3.0, fps=8, size=96), np.random.default_rng(0))
    assert track.shape == (6 * SAMPLE_RATE,)
    loud = np.flatnonzero(np.abs(track) > 0.05) / SAMPLE_RATE  # seconds where the (clean) words are
    first, second = loud[loud < 3.0], loud[loud >= 3.0]
    assert 0.2 <= first.min() < 0.4 and first.max() < 2.0
    assert 4.5 <= second.min() < 4.7 and second.max() < 6.0


def test_two_digit_clips_annotate_the_segments_the_server_cuts(clips: list[dict]) -> None:
    two = [c["row"] for c in clips if "segments" in c["row"]]
    assert two and all(len(c["jobs"][0][1].shots) == 1 for c in clips if "segments" not in c["row"])
    for row in two:
        bounds = [(s["start_s"], s["end_s"]) for s in row["segments"]]
        assert bounds == segment_bounds(6.0, CFG.video_segment_s, 0.0) == [(0.0, 3.0), (3.0, 6.0)]
        labels = [s["label"] for s in row["segments"]]
        assert labels[0] == row["label"] != labels[1] and labels == [str(d) for d in row["meta"]["digits"]]
        assert "text" not in row  # a hint would be true of one segment only


def test_clips_use_their_splits_voices_and_images(clips: list[dict]) -> None:
    rows = [c["row"] for c in clips]
    used = {
        s: {r["meta"]["voice"] for r in rows if r["split"] == s and "voice" in r["meta"]} for s in ("train", "test")
    }
    assert used["test"] <= set(voices(CFG, "test")) and used["train"] <= set(voices(CFG, "train"))
    sources = {s: {i for r in rows if r["split"] == s for i in r["meta"].get("digits_index", [])}
               for s in ("train", "val", "test")}  # fmt: skip
    assert not sources["test"] & (sources["train"] | sources["val"]) and not sources["train"] & sources["val"]
    assert Counter(r["split"] for r in rows) == {"train": 50, "val": 10, "test": 10}
    assert any("text" in r for r in rows)


def test_clean_clips_are_uncorrupted_held_out_voices_per_group() -> None:
    clean = plan_clean_clips(CFG, 5, 1.0)
    groups = Counter(c["row"]["meta"]["group"] for c in clean)
    assert groups == {name: 10 * CFG.video_clean_per_digit for name, _, _ in CLEAN_GROUPS}
    for item in clean:
        row, job = item["row"], item["jobs"][0][1]
        assert row["split"] == "test" and row["meta"]["modality"] == "video" and row["video"].startswith("clean/")
        for shot in job.shots:
            if shot.image is not None:
                assert shot.image.noise == shot.image.blur == 0 and not shot.image.patches and shot.cover is None
            if shot.speech is not None:
                assert shot.speech.snr_db is None and shot.speech.voice in CHECK_VOICES


def test_the_same_seed_writes_the_same_bytes_another_seed_does_not(clips: list[dict], tmp_path: Path) -> None:
    assert [c["row"] for c in plan_clips(CFG, 5, SCALE)] == [c["row"] for c in clips]
    item = next(c for c in clips if subset(c) == "frames+sound")
    once = hashlib.sha256(write(tmp_path / "a", item).read_bytes()).hexdigest()
    again = plan_clips(CFG, 5, SCALE)[clips.index(item)]
    assert hashlib.sha256(write(tmp_path / "b", again).read_bytes()).hexdigest() == once
    assert [c["row"] for c in plan_clips(CFG, 6, SCALE)] != [c["row"] for c in clips]


def test_a_shot_is_one_segment_of_the_default_bundle() -> None:
    cfg = load_config("tridigits.toml")
    assert (cfg.video_segment_s, cfg.video_overlap_s) == (CFG.video_segment_s, 0.0)
    spec = VideoPreprocess(frames_per_second=cfg.video_fps, max_frames_per_segment=cfg.video_max_frames,
                           segment_s=cfg.video_segment_s)  # fmt: skip
    kept = sample_times(0.0, CFG.video_segment_s, spec)
    assert len(kept) == 6 and CFG.video_fps >= 2 * cfg.video_fps  # the clip has frames between the kept ones
