"""Tridigits' video items: which digits a clip shows and speaks, how they move and are corrupted (demo_video.py
renders them), and the clean clips of the robustness set.

A clip shows one digit (one segment) or two in turn (two segments, annotated with `segments`; the row's label is
the first digit). Its frames corrupt a digit of the split's own load_digits share as the image items are; its
voice comes from the split's voices (held out in test) at the audio items' SNRs. Some clips have no picture,
some no sound, so every video subset occurs; a one-digit clip may carry a text hint beside it.

Drawn from their own generator, so adding clips leaves the image/audio/text items as they were.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from service.preprocess.video_plan import segment_bounds
from training.data.demo_jobs import DemoConfig, audio_job, image_job, image_pools, labelled_splits, uniform
from training.data.demo_media import CLEAN_IMAGE, AudioJob, ImageJob
from training.data.demo_text import WORDS, make_hint
from training.data.demo_video import Shot, VideoJob, sheet
from training.data.demo_views import CHECK_VOICES

# the robustness set's clip groups: (name, picture, sound)
CLEAN_GROUPS = (("frames+sound", True, True), ("frames", True, False), ("sound", False, True))
WORD_SPAN_S = 1.3  # room left for the spoken word after its onset (espeak-ng's slowest digit word is ~1 s)


def _onset(cfg: DemoConfig, rng: np.random.Generator) -> float:
    """Where the word starts inside its shot: anywhere that leaves it room to end before the shot does."""
    return round(float(rng.uniform(0.1, max(0.1, cfg.video_segment_s - WORD_SPAN_S))), 3)


def _cover(cfg: DemoConfig, rng: np.random.Generator) -> tuple[float, ...] | None:
    """A grey square hiding much of the digit for a stretch of the shot: (t0, t1, x, y, side, grey)."""
    if rng.random() >= cfg.video_cover_prob:
        return None
    length = uniform(rng, cfg.video_cover_share) * cfg.video_segment_s
    t0 = float(rng.uniform(0, cfg.video_segment_s - length))
    side = uniform(rng, cfg.video_cover_size)
    x, y = (float(rng.uniform(0.1, 0.9 - side)) for _ in range(2))
    return (round(t0, 3), round(t0 + length, 3), x, y, side, float(rng.uniform(0.3, 1.0)))


def _shot(cfg: DemoConfig, pixels: np.ndarray | None, speech: AudioJob | None, rng: np.random.Generator) -> Shot:
    image = None
    if pixels is not None:
        image = replace(image_job(cfg, sheet(pixels), rng), size=cfg.video_size)
    drift = (float(rng.uniform(-1, 1) * cfg.video_drift), float(rng.uniform(-1, 1) * cfg.video_drift))
    return Shot(image=image, drift=drift, shake=uniform(rng, cfg.video_shake), cover=_cover(cfg, rng), speech=speech)


def _presence(cfg: DemoConfig, rng: np.random.Generator) -> tuple[bool, bool]:
    picture = bool(rng.random() >= cfg.video_picture_absent_prob)
    sound = bool(rng.random() >= cfg.video_sound_absent_prob)
    return picture or not sound, sound


def _clip(cfg: DemoConfig, digits: list[int], split: str, images, pools, rng) -> tuple[VideoJob, dict]:
    """One clip's job and meta: a shot per digit, one voice for the whole clip."""
    picture, sound = _presence(cfg, rng)
    sources = [int(rng.choice(pools[(split, d)])) for d in digits]
    voice = audio_job(cfg, digits[0], split, rng) if sound else None
    shots = []
    for digit, source in zip(digits, sources, strict=True):
        speech = replace(voice, word=WORDS["en"][digit], lead_s=_onset(cfg, rng)) if voice else None
        shots.append(_shot(cfg, images[source] if picture else None, speech, rng))
    job = VideoJob(shots=tuple(shots), shot_s=cfg.video_segment_s, fps=cfg.video_fps, size=cfg.video_size)
    meta: dict = {"digits": digits, "covered": [s.cover is not None for s in shots]}
    meta |= {"digits_index": sources} if picture else {}
    if voice is not None:
        meta |= {"voice": voice.voice, "speed": voice.speed, "pitch": voice.pitch, "snr_db": voice.snr_db}
    return job, meta


def _segments(digits: list[int], cfg: DemoConfig) -> list[dict]:
    """The segments the server cuts a clip into (its default segmentation), each labelled with its shot's digit."""
    bounds = segment_bounds(len(digits) * cfg.video_segment_s, cfg.video_segment_s, 0.0)
    return [{"start_s": s, "end_s": e, "label": str(d)} for (s, e), d in zip(bounds, digits, strict=True)]


def plan_clips(cfg: DemoConfig, seed: int, scale: float) -> list[dict]:
    """Every clip's row and media job (demo._synthesise's item format); deterministic in (cfg, seed, scale)."""
    rng = np.random.default_rng([seed, 3])
    images, pools = image_pools(cfg, np.random.default_rng(seed))  # the same pools the image items draw from
    if cfg.n_videos == 0:
        return []  # a dataset without video: the other items exactly as they were
    n = max(30, round(cfg.n_videos * scale))
    labels, splits = labelled_splits(n, cfg.split_fractions)
    items = []
    for number, i in enumerate(rng.permutation(n)):
        first, split = int(labels[i]), str(splits[i])
        two = bool(rng.random() < cfg.video_two_digit_prob)
        digits = [first, int((first + rng.integers(1, 10)) % 10)] if two else [first]
        job, meta = _clip(cfg, digits, split, images, pools, rng)
        row = {"id": f"tv{number:05d}", "split": split, "label": str(first), "video": f"video/tv{number:05d}.mp4"}
        if not two and rng.random() < cfg.video_text_prob:
            row["text"], meta["hint"] = make_hint(first, rng, cfg)
        row |= {"segments": _segments(digits, cfg)} if two else {}
        row["meta"] = meta
        items.append({"row": row, "jobs": [(row["video"], job, np.random.SeedSequence([seed, 3, number]))]})
    return items


def _clean_clip(cfg: DemoConfig, pixels: np.ndarray, digit: int, voice: str, picture: bool, sound: bool) -> VideoJob:
    """An uncorrupted digit, still, its word spoken without noise by `voice` (a held-out one)."""
    image = ImageJob(pixels=sheet(pixels), size=cfg.video_size, **CLEAN_IMAGE) if picture else None
    speech = AudioJob(word=WORDS["en"][digit], voice=voice, speed=160, pitch=50, snr_db=None,
                      noise_colour=0.0, lead_s=0.5, tail_s=0.0) if sound else None  # fmt: skip
    shot = Shot(image=image, drift=(0.0, 0.0), shake=0.0, cover=None, speech=speech)
    return VideoJob(shots=(shot,), shot_s=cfg.video_segment_s, fps=cfg.video_fps, size=cfg.video_size)


def plan_clean_clips(cfg: DemoConfig, seed: int, scale: float = 1.0) -> list[dict]:
    """The robustness set's clips: per group and digit, test-split digits and held-out voices, no corruption."""
    images, pools = image_pools(cfg, np.random.default_rng(seed))
    per_digit = max(1, round(cfg.video_clean_per_digit * min(scale, 1.0)))
    items = []
    for group, picture, sound in CLEAN_GROUPS:
        for digit in range(10):
            for k, source in enumerate(pools[("test", digit)][:per_digit]):
                number, voice = len(items), CHECK_VOICES[k % len(CHECK_VOICES)]
                job = _clean_clip(cfg, images[int(source)], digit, voice, picture, sound)
                meta = {"modality": "video", "group": group} | ({"voice": voice} if sound else {})
                row = {"id": f"cv{number:05d}", "split": "test", "label": str(digit),
                       "video": f"clean/cv{number:05d}.mp4", "meta": meta}  # fmt: skip
                items.append({"row": row, "jobs": [(row["video"], job, np.random.SeedSequence([seed, 4, number]))]})
    return items
