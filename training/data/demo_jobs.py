"""Tridigits' settings and the random draws every item is made of: its split, its load_digits image, how that
image is corrupted (an ImageJob) and who speaks its word how (an AudioJob). demo.py plans the image/audio/text
items from these, demo_clips.py the video clips.

Every corruption strength is a DemoConfig field: build_tridigits(..., config=DemoConfig(audio_snr_db=...)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.demo_media import AudioJob, ImageJob
from training.data.demo_text import WORDS

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DemoConfig:
    n_items: int = 4000  # at scale 1.0
    split_fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    # modality presence (an item never loses all three)
    image_absent_prob: float = 0.15
    audio_absent_prob: float = 0.15
    text_absent_prob: float = 0.25
    # image corruption; (lo, hi) pairs are drawn uniformly per item
    image_size: int = 64
    image_blur: tuple[float, float] = (0.0, 4.0)  # Gaussian radius, pixels at image_size
    image_noise: tuple[float, float] = (0.05, 0.45)  # noise std, fraction of full scale
    image_occlusion_prob: float = 0.6
    image_patches: tuple[int, int] = (1, 3)  # patches per occluded image
    image_patch_size: tuple[float, float] = (0.15, 0.45)  # side, fraction of the image
    image_shift: float = 0.08  # max translation, fraction of the side
    image_contrast: tuple[float, float] = (0.35, 1.0)  # ink darkness
    # audio: voice = accent + variant; the test split uses only held-out voices
    accents: tuple[str, ...] = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
    test_accents: tuple[str, ...] = ("en-029", "en-us-nyc")
    variants: tuple[str, ...] = ("m1", "m2", "m3", "m5", "m6", "m7", "f1", "f2", "f3", "f5", "klatt", "croak")
    test_variants: tuple[str, ...] = ("m4", "m8", "f4", "klatt3")
    speeds: tuple[int, ...] = (120, 145, 170, 200)  # words per minute
    pitches: tuple[int, ...] = (25, 40, 55, 70)
    audio_snr_db: tuple[float, float] = (-12.0, 6.0)
    audio_noise_colours: tuple[float, ...] = (0.0, 1.0, 2.0)  # white, pink, brown
    audio_silence_s: tuple[float, float] = (0.05, 0.5)  # before and after the word
    # text hints (truthful; ambiguity comes from partial hints, typos and absence)
    text_partial_share: float = 0.5
    text_numeral_share: float = 0.2  # of exact hints
    text_typo_prob: float = 0.3
    text_max_typos: int = 2
    partial_set_sizes: tuple[int, int] = (2, 5)
    # training views per train item (demo_views.py): extra renderings of its image and its spoken word
    image_views: int = 9
    audio_views: int = 2
    # video clips (demo_clips.py, demo_video.py): MP4, H.264 + AAC, one digit per shot, corrupted as above
    n_videos: int = 700  # at scale 1.0
    video_size: int = 96  # frame side; the digit takes 2/3 of it, so it can move
    video_fps: int = 8  # the clips' own frame rate (the bundle keeps fewer: tridigits.toml's video_fps)
    video_segment_s: float = 3.0  # one shot = one segment: must equal tridigits.toml's video_segment_s
    video_two_digit_prob: float = 0.25  # two shots, two different digits, segments annotated
    video_picture_absent_prob: float = 0.15  # an MP4 with no video stream (never both absent)
    video_sound_absent_prob: float = 0.15  # an MP4 with no audio stream
    video_text_prob: float = 0.2  # a text hint beside a one-digit clip
    video_drift: float = 0.05  # max speed, fraction of the side per second (per axis)
    video_shake: tuple[float, float] = (0.0, 0.02)  # per-frame jitter std, fraction of the side
    video_cover_prob: float = 0.4  # a shot's digit is hidden for part of its time
    video_cover_share: tuple[float, float] = (0.3, 0.6)  # of the shot's time
    video_cover_size: tuple[float, float] = (0.45, 0.7)  # side, fraction of the frame
    video_clean_per_digit: int = 6  # robustness clips per digit and group, at scale 1.0


def voices(cfg: DemoConfig, split: str) -> list[str]:
    """espeak-ng voices of a split: train/val use seen accents x seen variants; test every other pair."""
    all_accents, all_variants = cfg.accents + cfg.test_accents, cfg.variants + cfg.test_variants
    pairs = [(a, v) for a in all_accents for v in all_variants]
    seen = [(a, v) for a, v in pairs if a in cfg.accents and v in cfg.variants]
    chosen = [p for p in pairs if p not in seen] if split == "test" else seen
    return [f"{a}+{v}" for a, v in chosen]


def split_counts(n: int, fractions: tuple[float, float, float]) -> list[int]:
    n_train, n_val = round(n * fractions[0]), round(n * fractions[1])
    return [n_train, n_val, n - n_train - n_val]


def labelled_splits(n: int, fractions: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Item i's digit (i % 10) and its split, the split fractions kept per digit: ([n] int, [n] str)."""
    labels = np.arange(n) % 10
    splits = np.empty(n, dtype=object)
    for d in range(10):
        idx = np.flatnonzero(labels == d)
        splits[idx] = np.repeat(SPLITS, split_counts(idx.size, fractions))
    return labels, splits


def image_pools(cfg: DemoConfig, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """load_digits images and, per split and digit, that split's own disjoint share of them."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pools: dict[tuple[str, int], np.ndarray] = {}
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(digits.target == d))
        bounds = np.cumsum(split_counts(idx.size, cfg.split_fractions))[:2]
        for split, part in zip(SPLITS, np.split(idx, bounds), strict=True):
            pools[(split, d)] = part
    return digits.images, pools


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def image_job(cfg: DemoConfig, pixels: np.ndarray, rng: np.random.Generator) -> ImageJob:
    n_patches = int(rng.integers(cfg.image_patches[0], cfg.image_patches[1] + 1))
    if rng.random() >= cfg.image_occlusion_prob:
        n_patches = 0
    patches = []
    for _ in range(n_patches):  # square patches (x, y, side, side, grey), anywhere on the image
        x, y, side = float(rng.uniform(0, 0.8)), float(rng.uniform(0, 0.8)), uniform(rng, cfg.image_patch_size)
        patches.append((x, y, side, side, float(rng.uniform(0.3, 1.0))))
    return ImageJob(
        pixels=pixels,
        size=cfg.image_size,
        blur=uniform(rng, cfg.image_blur),
        noise=uniform(rng, cfg.image_noise),
        patches=tuple(patches),
        shift=(float(rng.uniform(-1, 1) * cfg.image_shift), float(rng.uniform(-1, 1) * cfg.image_shift)),
        contrast=uniform(rng, cfg.image_contrast),
    )


def audio_job(cfg: DemoConfig, digit: int, split: str, rng: np.random.Generator) -> AudioJob:
    pool = voices(cfg, split)
    return AudioJob(
        word=WORDS["en"][digit],
        voice=pool[rng.integers(len(pool))],
        speed=int(rng.choice(cfg.speeds)),
        pitch=int(rng.choice(cfg.pitches)),
        snr_db=round(uniform(rng, cfg.audio_snr_db), 2),
        noise_colour=float(rng.choice(cfg.audio_noise_colours)),
        lead_s=round(uniform(rng, cfg.audio_silence_s), 3),
        tail_s=round(uniform(rng, cfg.audio_silence_s), 3),
    )
