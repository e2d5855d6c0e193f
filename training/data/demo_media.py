"""Tridigits media: a corrupted handwritten digit (PNG) and a noisy spoken digit word (16 kHz WAV); the video
clips (MP4) are demo_video.py's.

Runs in worker processes: every function is pure given its arguments (and a seeded generator), so a build
is byte-identical whatever the number of workers or the order they finish in.
"""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr
from PIL import Image, ImageFilter

SAMPLE_RATE = 16_000
ESPEAK = "espeak-ng"


@dataclass(frozen=True)
class ImageJob:
    pixels: np.ndarray  # 8x8 load_digits values 0..16
    size: int
    blur: float  # Gaussian blur radius in output pixels
    noise: float  # Gaussian noise std, fraction of full scale
    patches: tuple[tuple[float, float, float, float, float], ...]  # (x, y, w, h, grey level) in 0..1
    shift: tuple[float, float]  # translation, fraction of the side
    contrast: float  # ink darkness 0..1
    light_ink: bool = False  # False: dark ink on light paper (the corrupted split); True: inverted
    resample: str = "bicubic"  # the 8x8 → size upscaling filter: nearest | bilinear | bicubic


CLEAN_IMAGE = dict(blur=0.0, noise=0.0, patches=(), shift=(0.0, 0.0), contrast=1.0)  # an ImageJob's no-corruption
_RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
             "bicubic": Image.Resampling.BICUBIC}  # fmt: skip


@dataclass(frozen=True)
class AudioJob:
    word: str
    voice: str  # espeak-ng voice: accent+variant
    speed: int  # words per minute
    pitch: int  # 0..99
    snr_db: float | None  # None: clean (no noise added)
    noise_colour: float  # spectral slope exponent: 0 white, 1 pink, 2 brown
    lead_s: float  # silence before the word
    tail_s: float  # silence after it


def render_digit(job: ImageJob, rng: np.random.Generator) -> Image.Image:
    """Upscaled digit, dark ink on light paper (or inverted), shifted, blurred, occluded and noisy (greyscale)."""
    ink = Image.fromarray((job.pixels / 16.0 * 255).astype(np.uint8), "L")
    ink = ink.resize((job.size, job.size), _RESAMPLE[job.resample])
    ink = ink.transform(
        ink.size, Image.Transform.AFFINE, (1, 0, -job.shift[0] * job.size, 0, 1, -job.shift[1] * job.size)
    )
    if job.blur > 0:
        ink = ink.filter(ImageFilter.GaussianBlur(job.blur))
    paper = 1.0 - job.contrast * np.asarray(ink, dtype=np.float32) / 255.0
    for x, y, w, h, grey in job.patches:
        x0, y0 = int(x * job.size), int(y * job.size)
        paper[y0 : y0 + max(1, int(h * job.size)), x0 : x0 + max(1, int(w * job.size))] = grey
    if job.noise > 0:
        paper = paper + rng.normal(0.0, job.noise, paper.shape).astype(np.float32)
    if job.light_ink:
        paper = 1.0 - paper
    return Image.fromarray((np.clip(paper, 0.0, 1.0) * 255).round().astype(np.uint8), "L")


def speak(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng's rendering of `word`, mono float32 at SAMPLE_RATE."""
    cmd = [ESPEAK, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word]
    wav = subprocess.run(cmd, check=True, capture_output=True, timeout=30).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    return soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise with power spectrum ~ 1/f**exponent."""
    size = 1 << max(1, (n - 1).bit_length())  # a power of two: FFTs of prime lengths are slow
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size)
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), size)[:n]
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def noisy_speech(job: AudioJob, rng: np.random.Generator) -> np.ndarray:
    """The spoken word padded with silence, plus noise at job.snr_db relative to the speech's power."""
    speech = speak(job.word, job.voice, job.speed, job.pitch)
    lead, tail = int(job.lead_s * SAMPLE_RATE), int(job.tail_s * SAMPLE_RATE)
    clip = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(tail, np.float32)])
    if job.snr_db is None:
        return (clip * (0.5 / max(1e-6, float(np.abs(clip).max())))).astype(np.float32)
    active = speech[np.abs(speech) > 0.02 * np.abs(speech).max()] if speech.size else speech
    power = float(np.mean(active**2)) if active.size else 1e-4
    noise = coloured_noise(clip.size, job.noise_colour, rng) * np.sqrt(power / 10 ** (job.snr_db / 10))
    clip = clip + noise.astype(np.float32)
    return (clip * (0.5 / max(1e-6, float(np.abs(clip).max())))).astype(np.float32)  # peak at -6 dBFS
