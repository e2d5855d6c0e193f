"""Extra renderings for tridigits: training views of each train item, and the clean robustness set.

Training views (listed under an item's "views" in dataset.jsonl): the same handwritten digit re-rendered —
clean, mildly and fully corrupted, either ink polarity, any of three upscaling filters, several sizes — and
the same spoken word clean and in fresh noise. The feature cache keys on the rendered bytes, so each view
is one more cached feature; training samples one rendering per item and modality each epoch.

The robustness set (robustness.jsonl) holds clean single-modality items built from the *test* split's
share of load_digits and held-out voices, one group per rendering (meta.group): every image polarity ×
filter × size, the spoken words per accent (two accents never heard in training), and exact text hints
per language. It measures whether a clean, ordinary input gets the right answer.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from training.data.demo_media import CLEAN_IMAGE, AudioJob, ImageJob
from training.data.demo_text import EXACT_TEMPLATES, WORDS

FILTERS = ("nearest", "bilinear", "bicubic")
# blocky nearest-neighbour upscales are the hardest clean rendering for the frozen features: half the views
VIEW_FILTER_P = (0.5, 0.25, 0.25)
CLEAN_SIZES = (32, 64, 128)
VIEW_SIZES = (24, 32, 48, 64, 96, 128)
# clean-audio grid: two seen voice variants and two held out of training, at a middle speed and pitch
CLEAN_VARIANTS = ("m4", "f1", "m1", "f4")  # held-out m4 first: a small build still has a held-out variant
# the spoken-word-vs-image check: three voices never heard in training (test accents or test variants)
CHECK_VOICES = ("en-029+m4", "en-us-nyc+f4", "en-gb-scotland+m4")


def polarity_name(light_ink: bool) -> str:
    return "light-on-dark" if light_ink else "dark-on-light"


def image_views(job: ImageJob, count: int, rng: np.random.Generator, corrupted) -> list[ImageJob]:
    """`count` renderings of job's digit: a third clean, a third mild (corruption drawn then scaled by
    0.2–0.5), a third as corrupted as the data set; random polarity, filter and size each.
    corrupted(rng) draws a fresh fully corrupted ImageJob (demo._image_job)."""
    views = []
    for k in range(count):
        fresh = corrupted(rng)
        look = dict(light_ink=bool(rng.random() < 0.5), resample=str(rng.choice(FILTERS, p=VIEW_FILTER_P)),
                    size=int(rng.choice(VIEW_SIZES)))  # fmt: skip
        if k % 3 == 0:
            view = replace(fresh, **CLEAN_IMAGE, **look)
        elif k % 3 == 1:
            s = float(rng.uniform(0.2, 0.5))
            patches = fresh.patches[:1] if rng.random() < 0.5 else ()
            view = replace(fresh, blur=fresh.blur * s, noise=fresh.noise * s, patches=patches, **look)
        else:
            view = replace(fresh, **look)
        views.append(replace(view, pixels=job.pixels))
    return views


def audio_views(job: AudioJob, count: int, rng: np.random.Generator, snr_db: tuple[float, float]) -> list[AudioJob]:
    """`count` renderings of the spoken word by the same voice: the first clean, the others in fresh noise."""
    views = []
    for k in range(count):
        snr = None if k == 0 else round(float(rng.uniform(*snr_db)), 2)
        views.append(replace(job, snr_db=snr, noise_colour=float(rng.choice((0.0, 1.0, 2.0)))))
    return views


def clean_images(sources: list[tuple[np.ndarray, int]]) -> list[tuple[dict, ImageJob]]:
    """Every (polarity, filter, size) rendering of every (8x8 pixels, digit) source: (row, job) pairs."""
    out = []
    for light, resample, size in itertools.product((False, True), FILTERS, CLEAN_SIZES):
        group = f"{polarity_name(light)} {resample} {size}px"
        for pixels, digit in sources:
            job = ImageJob(pixels=pixels, size=size, light_ink=light, resample=resample, **CLEAN_IMAGE)
            out.append(({"label": str(digit), "meta": {"modality": "image", "group": group}}, job))
    return out


def clean_audio(accents: tuple[str, ...], held_out: tuple[str, ...], variants: int) -> list[tuple[dict, AudioJob]]:
    """Each digit word by every accent × the first `variants` CLEAN_VARIANTS voices, no noise: (row, job) pairs."""
    out = []
    for accent, variant, digit in itertools.product(accents, CLEAN_VARIANTS[:variants], range(10)):
        job = AudioJob(word=WORDS["en"][digit], voice=f"{accent}+{variant}", speed=160, pitch=50, snr_db=None,
                       noise_colour=0.0, lead_s=0.1, tail_s=0.1)  # fmt: skip
        group = f"accent {accent}" + (" (held out)" if accent in held_out else "")
        out.append(({"label": str(digit), "meta": {"modality": "audio", "group": group, "voice": job.voice}}, job))
    return out


def clean_texts() -> list[dict]:
    """Exact hints: each digit as a numeral and as its word in every language, in every template."""
    rows = []
    spellings = {"numeral": [str(d) for d in range(10)]} | WORDS
    for group, words in spellings.items():
        for digit, word in enumerate(words):
            for text in dict.fromkeys(t.format(w=word) for t in EXACT_TEMPLATES):
                rows.append({"label": str(digit), "text": text, "meta": {"modality": "text", "group": group}})
    return rows


def robustness_items(sources, accents, held_out, seed: int, variants: int = len(CLEAN_VARIANTS)) -> list[dict]:
    """Rows of robustness.jsonl with their media jobs (demo._synthesise's item format)."""
    items = []
    for number, (row, job) in enumerate(clean_images(sources) + clean_audio(accents, held_out, variants)):
        modality = row["meta"]["modality"]
        path = f"clean/c{number:05d}.{'png' if modality == 'image' else 'wav'}"
        row = {"id": f"c{number:05d}", "split": "test", "label": row["label"], modality: path, "meta": row["meta"]}
        items.append({"row": row, "jobs": [(path, job, np.random.SeedSequence([seed, 2, number]))]})
    for row in clean_texts():
        items.append({"row": {"id": f"c{len(items):05d}", "split": "test"} | row, "jobs": []})
    return items
