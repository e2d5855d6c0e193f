"""Shared builders for the image preprocessing tests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from service.manifest import ImagePreprocess

RAW = ImagePreprocess(size=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # output = pixel values
NEAREST = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "resample": "nearest"}
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
LIMIT = 4_000_000


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def solid(color, size=(8, 8), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def bands(size: tuple[int, int], colors, vertical: bool = True) -> Image.Image:
    """Equal colour bands: left→right when vertical, else top→bottom."""
    width, height = size
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    n = len(colors)
    for i, color in enumerate(colors):
        if vertical:
            pixels[:, i * width // n : (i + 1) * width // n] = color
        else:
            pixels[i * height // n : (i + 1) * height // n, :] = color
    return Image.fromarray(pixels, "RGB")


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height RGB pixels, with a few bytes of real data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def webp_declaring(width: int, height: int) -> bytes:
    """A lossless-WebP (VP8L) header declaring width x height, then zeros."""
    payload = b"\x2f" + struct.pack("<I", (width - 1) | ((height - 1) << 14)) + bytes(32)
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def jpeg_declaring(width: int, height: int) -> bytes:
    """SOI, a baseline SOF0 declaring width x height (3 components), SOS and a few bytes of scan."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + b"\x01\x00\x02\x00\x03\x00" + b"\x00\x3f\x00"
    return b"\xff\xd8" + sof + sos + bytes(64) + b"\xff\xd9"


def bmp_declaring(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 54) + info + bytes(16)


def channel_means(out: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in out.reshape(3, -1).mean(axis=1))
