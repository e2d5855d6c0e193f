"""Small real media files, good and bad, built in memory for tests (no files shipped)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import soundfile
from PIL import Image


def png(width: int = 20, height: int = 20, mode: str = "RGB", seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def encoded_image(fmt: str, width: int = 20, height: int = 20) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    data = encoded_image("JPEG", 64, 64)
    return data[: len(data) // 2]


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid PNG header declaring width x height pixels with a tiny (bogus) data chunk."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def audio(
    seconds: float = 1.0, rate: int = 16_000, channels: int = 1, fmt: str = "WAV", subtype: str = "PCM_16"
) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    buffer = io.BytesIO()
    soundfile.write(buffer, data, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def wav_claiming(seconds: float, rate: int = 16_000) -> bytes:
    """A WAV header whose data chunk claims `seconds` of 16-bit mono audio, followed by 0.1 s of it."""
    declared = int(seconds * rate) * 2
    header = b"RIFF" + struct.pack("<I", 36 + declared) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", declared)
    return header + b"\0" * (rate // 5)
