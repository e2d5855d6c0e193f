"""The bundle under test and the pre-generated request inputs of each workload.

Inputs are generated once, before any timing, and reused by every phase, so the in-process ceiling and
the HTTP server see byte-identical items. HTTP bodies are multipart-encoded up front (by httpx itself)
so that the load generator spends its CPU on sending, not on encoding.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import soundfile
from PIL import Image

from service.items import RawItem
from service.manifest import Manifest, read_manifest
from tests.bundles import WORDS, build_bundle

WORKLOADS = {
    "text-only": ("text",),
    "image-only": ("image",),  # 224–640 px PNG photos
    "jpeg-only": ("image",),  # 640×480 JPEG photos, a phone upload's size
    "all-three": ("image", "text", "audio"),
}
# Realistic model shapes for the built bundle: the test graphs stay cheap (pooling + small MLPs), but the
# tensors the server collates, copies and feeds are the sizes a real CLIP/Whisper-like bundle takes. Its image
# encoder takes uint8 pixels and normalises them itself (ImagePreprocess.normalise "graph").
BUILT_BUNDLE = dict(
    image_size=224, dim=256, n_mels=80, text_max_length=128, audio_max_seconds=10.0, image_normalise="graph"
)
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass
class Bundle:
    model_dir: Path
    name: str
    version: str
    manifest: Manifest
    built: bool  # True: a random-weight bundle built by the bench; False: one given with --model-dir

    def describe(self) -> dict:
        encoders = self.manifest.encoders
        directory = self.model_dir / self.name / self.version
        return {
            "source": "built by the bench with tests.bundles.build_bundle, random weights" if self.built else "given",
            "path": str(directory),
            "name": self.name,
            "version": self.version,
            "modalities": self.manifest.modalities(),
            "embedding_dim": self.manifest.embedding_dim,
            "labels": len(self.manifest.labels),
            "image_size": encoders.image.preprocess.size if encoders.image else None,
            "n_mels": encoders.audio.preprocess.n_mels if encoders.audio else None,
            "text_max_length": encoders.text.preprocess.max_length if encoders.text else None,
            "onnx_bytes": sum(p.stat().st_size for p in directory.glob("*.onnx")),
        }


def resolve_bundle(model_dir: Path | None, model: str | None, scratch: Path) -> Bundle:
    """The given bundle (newest version of --model, or of the only model in --model-dir), else a built one."""
    if model_dir is None:
        build_bundle(scratch, "bench", "1", labels=DIGITS, **BUILT_BUNDLE)
        return Bundle(scratch, "bench", "1", read_manifest(scratch / "bench" / "1" / "manifest.json"), built=True)
    names = sorted(p.parent.parent.name for p in model_dir.glob("*/*/manifest.json"))
    if model is None:
        if len(set(names)) != 1:
            raise SystemExit(f"bench: --model-dir {model_dir} holds models {sorted(set(names))}; pick one with --model")
        model = names[0]
    versions = sorted((p.parent.name for p in model_dir.glob(f"{model}/*/manifest.json")), key=int, reverse=True)
    if not versions:
        raise SystemExit(f"bench: no bundle {model}/<version>/manifest.json under {model_dir}")
    manifest = read_manifest(model_dir / model / versions[0] / "manifest.json")
    return Bundle(model_dir, model, versions[0], manifest, built=False)


@dataclass
class Workload:
    name: str
    modalities: tuple[str, ...]
    raw: list[RawItem] = field(default_factory=list)  # for the in-process ceiling
    bodies: list[tuple[bytes, dict]] = field(default_factory=list)  # (multipart body, headers) for HTTP

    def describe(self) -> dict:
        sizes = {
            m: [len(getattr(r, m).encode() if m == "text" else getattr(r, m)) for r in self.raw]
            for m in self.modalities
        }
        return {
            "modalities": list(self.modalities),
            "items": len(self.raw),
            "mean_bytes": {m: round(float(np.mean(v))) for m, v in sizes.items()},
            "mean_body_bytes": round(float(np.mean([len(b) for b, _ in self.bodies]))),
        }


def build_workloads(bundle: Bundle, pool: int, seed: int = 0) -> tuple[list[Workload], list[str]]:
    """One workload per WORKLOADS entry the bundle can serve; the others are named as skipped."""
    workloads, skipped = [], []
    for index, (name, modalities) in enumerate(WORKLOADS.items()):
        if not set(modalities) <= set(bundle.manifest.modalities()):
            skipped.append(name)
            continue
        workload, generators = Workload(name, modalities), GENERATORS | WORKLOAD_GENERATORS.get(name, {})
        for i in range(pool):
            rng = np.random.default_rng([seed, index, i])
            item = RawItem(**{m: generators[m](rng) for m in modalities})
            workload.raw.append(item)
            workload.bodies.append(multipart(item))
        workloads.append(workload)
    return workloads, skipped


def multipart(item: RawItem) -> tuple[bytes, dict]:
    files = {}
    if item.image is not None:
        jpeg = item.image[:3] == b"\xff\xd8\xff"
        files["image"] = ("photo.jpg", item.image, "image/jpeg") if jpeg else ("photo.png", item.image, "image/png")
    if item.audio is not None:
        files["audio"] = ("clip.wav", item.audio, "audio/wav")
    if item.text is not None:
        files["text"] = (None, item.text)  # a plain form field
    request = httpx.Request("POST", "http://127.0.0.1/", files=files)
    return request.read(), {"content-type": request.headers["content-type"]}


def photo_png(rng: np.random.Generator) -> bytes:
    """A 224–640 px photo-like PNG: smooth colour fields plus mild sensor noise (compresses like a photo,
    unlike white noise, which would make PNG decoding unrealistically slow)."""
    height, width = (int(v) for v in rng.integers(224, 641, size=2))
    scale = np.float32(2 * np.pi / max(height, width))
    y = np.arange(height, dtype=np.float32)[:, None] * scale
    x = np.arange(width, dtype=np.float32)[None, :] * scale
    channels = []
    for _ in range(3):
        fx, fy, phase = (np.float32(v) for v in (rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0), rng.uniform(0, 6.3)))
        channels.append(128 + 90 * np.sin(fx * x + fy * y + phase))
    pixels = np.stack(channels, axis=-1) + 4 * rng.standard_normal((height, width, 3), dtype=np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def speech_like_wav(rng: np.random.Generator) -> bytes:
    """1–3 s mono 16-bit WAV at 16 kHz or 44.1 kHz (half the clips need resampling, as phone uploads do)."""
    rate = int(rng.choice([16_000, 44_100]))
    seconds = rng.uniform(1.0, 3.0)
    t = np.arange(int(rate * seconds)) / rate
    pitch = rng.uniform(100, 250) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
    wave = sum(np.sin(2 * np.pi * k * np.cumsum(pitch) / rate) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t) ** 2  # syllable-like loudness
    wave = 0.2 * wave * envelope + rng.normal(0, 0.01, t.size)
    buffer = io.BytesIO()
    soundfile.write(buffer, (np.clip(wave, -1, 1) * 32767).astype(np.int16), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def short_text(rng: np.random.Generator) -> str:
    return " ".join(str(w) for w in rng.choice(WORDS, size=int(rng.integers(4, 25))))


def photo_jpeg(rng: np.random.Generator) -> bytes:
    """A 640×480 photo-like JPEG (quality 90): the PNG generator's picture, re-encoded at a phone's size."""
    picture = Image.open(io.BytesIO(photo_png(rng))).convert("RGB").resize((640, 480), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


GENERATORS = {"image": photo_png, "audio": speech_like_wav, "text": short_text}
WORKLOAD_GENERATORS = {"jpeg-only": {"image": photo_jpeg}}
