"""Writing tridigits' media files: each job to its file (PNG, WAV or MP4), one item's jobs per pool task.
Its own module so demo_media (the renderers) and demo_video (the clips, built on those renderers) import
nothing of each other's callers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from training.data.demo_media import SAMPLE_RATE, AudioJob, ImageJob, noisy_speech, render_digit
from training.data.demo_video import write_clip


def write_media(path: Path, job, rng: np.random.Generator) -> None:
    """One PNG (ImageJob), 16 kHz 16-bit WAV (AudioJob) or MP4 (demo_video.VideoJob) at `path`."""
    if isinstance(job, ImageJob):
        render_digit(job, rng).save(path, optimize=False)
    elif isinstance(job, AudioJob):
        sf.write(path, noisy_speech(job, rng), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    else:
        write_clip(path, job, rng)


def make_item(args: tuple[Path, list[tuple[str, object, np.random.SeedSequence]]]) -> None:
    """Write one item's media files: (path relative to root, job, seed of its own rng) each."""
    root, jobs = args
    for relative, job, seed in jobs:
        write_media(root / relative, job, np.random.default_rng(seed))
