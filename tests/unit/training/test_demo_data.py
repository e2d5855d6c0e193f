"""tridigits at a small scale: deterministic, valid for the loader, media the server can decode, held-out voices."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from service.items import VideoArrays
from service.manifest import AudioPreprocess, ImagePreprocess
from service.preprocess import decode_audio, decode_image
from training.config import TrainConfig, load_config
from training.data.dataset import load_dataset
from training.data.demo import build_tridigits
from training.data.demo_jobs import DemoConfig, voices
from training.data.demo_text import PARTIAL_HINTS, WORDS, add_typos, make_hint
from training.data.video_decode import decode_clip, video_inputs, video_preprocess

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
SCALE = 0.02  # 80 items


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


BUILD_S = 120.0  # the small build: 16–33 s on 2 cores shared with other work (a clip: ~0.13 s of CPU)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    start = time.perf_counter()
    manifest = build_tridigits(tmp_path_factory.mktemp("td") / "a", seed=3, scale=SCALE, progress=False)
    assert time.perf_counter() - start < BUILD_S
    return manifest


@pytest.fixture(scope="module")
def rows(built: Path) -> list[dict]:
    return [json.loads(line) for line in built.read_text().splitlines()]


def test_same_seed_gives_identical_files_another_seed_or_scale_does_not(built: Path, tmp_path: Path) -> None:
    again = build_tridigits(tmp_path / "b", seed=3, scale=SCALE, progress=False, workers=1)
    assert digest(again.parent) == digest(built.parent)
    other = build_tridigits(tmp_path / "c", seed=4, scale=0.0075, progress=False)
    assert other.read_text().count("\n") == 30 + 30  # the floors: a few items and clips per label
    assert other.read_bytes() != built.read_bytes()[: len(other.read_bytes())]


def test_loader_accepts_it_and_all_splits_and_labels_are_present(built: Path, rows: list[dict]) -> None:
    examples = load_dataset(built)  # decodes every file with service.preprocess
    assert len(examples) == len(rows) == 80 + 30  # 80 items, 30 clips (the clips' floor)
    counts = Counter((e.split, e.video is not None) for e in examples)
    assert counts == {("train", False): 60, ("val", False): 10, ("test", False): 10,  # 70/15/15 per label
                      ("train", True): 20, ("test", True): 10}  # 3 clips per label: 2.1, 0.45, rounded  # fmt: skip
    assert {e.label for e in examples} == {str(d) for d in range(10)}
    assert all(e.modalities() for e in examples)
    assert len({"+".join(e.modalities()) for e in examples}) >= 5  # modality subsets occur, video among them
    readme = (built.parent / "README.md").read_text()
    assert readme.count("| **all** | 80 | 10 | 20 | 110 |") == 1 and "| frames+sound, one digit |" in readme


def test_test_voices_never_occur_in_train_or_val(rows: list[dict]) -> None:
    used = {
        split: {r["meta"]["voice"] for r in rows if r["split"] == split and "audio" in r}
        for split in ("train", "val", "test")
    }
    assert used["test"] and used["train"]
    assert not used["test"] & (used["train"] | used["val"])
    cfg = DemoConfig()
    assert not set(voices(cfg, "test")) & set(voices(cfg, "train"))
    assert voices(cfg, "train") == voices(cfg, "val")


def test_each_split_draws_on_its_own_load_digits_images(rows: list[dict]) -> None:
    sources = {
        s: {r["meta"]["digits_index"] for r in rows if r["split"] == s and "image" in r}
        for s in ("train", "val", "test")
    }
    assert not sources["test"] & (sources["train"] | sources["val"])
    assert not sources["train"] & sources["val"]


def test_audio_is_16khz_mono_wav_the_server_decodes(built: Path, rows: list[dict]) -> None:
    spec = AudioPreprocess()
    for row in [r for r in rows if "audio" in r][:10]:
        path = built.parent / row["audio"]
        info = sf.info(path)
        assert (info.format, info.samplerate, info.channels, info.subtype) == ("WAV", 16000, 1, "PCM_16")
        assert 0.3 < info.duration < 3.0
        mel = decode_audio(path.read_bytes(), spec, max_seconds=30)
        assert mel.shape[0] == 80 and np.isfinite(mel).all()


def test_images_decode_to_the_encoder_input(built: Path, rows: list[dict]) -> None:
    spec = ImagePreprocess(size=224, mean=(127.0,) * 3, std=(128.0,) * 3)
    for row in [r for r in rows if "image" in r][:10]:
        pixels = decode_image((built.parent / row["image"]).read_bytes(), spec, max_pixels=40_000_000)
        assert pixels.shape == (3, 224, 224) and pixels.std() > 0.05


def test_hints_are_truthful() -> None:
    rng = np.random.default_rng(0)
    for digit in range(10):
        for _ in range(50):
            text, kind = make_hint(digit, rng, DemoConfig(text_typo_prob=0.5))
            if kind.startswith("exact") and "typo" not in kind:
                assert str(digit) in text or any(words[digit] in text for words in WORDS.values())
            named = {d for words in WORDS.values() for d, w in enumerate(words) if w in text.lower().split()}
            assert kind.startswith("partial") or named <= {digit}, text
    assert all(any(d in digits and 2 <= len(digits) <= 5 for _, digits in PARTIAL_HINTS) for d in range(10))
    assert add_typos("7", 7, rng) == "7"  # numerals are never edited


def decoded(path: Path, cfg: TrainConfig) -> VideoArrays:
    """A clip as the default bundle's server decodes it (tridigits.toml's segmentation and sampling)."""
    image = ImagePreprocess(size=224, mean=(127.0,) * 3, std=(128.0,) * 3)
    inputs = video_inputs(video_preprocess(cfg), image, AudioPreprocess())
    return decode_clip(path.read_bytes(), inputs)


def test_clips_decode_into_the_segments_they_annotate(built: Path, rows: list[dict]) -> None:
    cfg = load_config("tridigits.toml")
    clips = [r for r in rows if "video" in r]
    assert {("digits_index" in r["meta"], "voice" in r["meta"]) for r in clips} == {(1, 1), (1, 0), (0, 1)}
    for row in clips[:12] + [r for r in clips if "segments" in r][:3]:
        arrays = decoded(built.parent / row["video"], cfg)
        shots = len(row["meta"]["digits"])
        assert arrays.bounds.tolist() == [[3.0 * k, 3.0 * (k + 1)] for k in range(shots)]
        if "segments" in row:
            assert [[s["start_s"], s["end_s"]] for s in row["segments"]] == arrays.bounds.tolist()
        frames = 6 * shots if "digits_index" in row["meta"] else 0  # 2 a second, 3 s a segment
        assert arrays.frames.shape == (frames, 3, 224, 224) and np.isfinite(arrays.frames).all()
        assert arrays.frame_segment.tolist() == [k // 6 for k in range(frames)]
        assert ((arrays.audio_length > 0) == ("voice" in row["meta"])).all()


def test_robustness_has_clean_clips_per_group(built: Path) -> None:
    clean = [json.loads(line) for line in (built.parent / "robustness.jsonl").read_text().splitlines()]
    clips = [r for r in clean if r["meta"]["modality"] == "video"]
    assert Counter(r["meta"]["group"] for r in clips) == {"frames+sound": 10, "frames": 10, "sound": 10}
    cfg = load_config("tridigits.toml")
    for row in clips[::7]:
        arrays = decoded(built.parent / row["video"], cfg)
        assert len(arrays.bounds) == 1 and len(arrays.frames) == (0 if row["meta"]["group"] == "sound" else 6)
