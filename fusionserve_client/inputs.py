"""Inputs → the bytes the server takes: a path, bytes or a binary file for any medium (a video only so: MP4/MOV,
WebM/MKV, AVI); a PIL image (sent as PNG); a numpy waveform with its sample rate, `(samples, rate)` (sent as WAV);
text as a str.

Nothing here imports Pillow or numpy up front: a PIL image can only exist once PIL.Image is imported, and a
waveform only once numpy is, so both are recognised (and encoded) without making either a dependency.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import numbers
import os
import sys
import wave
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MODALITIES = ("image", "audio", "text", "video")
FILES = ("image", "audio", "video")  # the media sent as files (multipart parts; base64 in JSON)
# Pillow modes a PNG stores as they are; anything else (CMYK, YCbCr, F…) is converted to RGB first
PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}


def _pil_image_type() -> type | None:
    module = sys.modules.get("PIL.Image")
    return getattr(module, "Image", None)


def _is_waveform(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and hasattr(value[0], "dtype")
        and hasattr(value[0], "shape")
        and isinstance(value[1], numbers.Integral)  # numpy's integers too
    )


def _file_bytes(value: Any, name: str) -> tuple[str, bytes] | None:
    """A path, bytes-like or binary file object → (filename, bytes); None for anything else."""
    if isinstance(value, str | os.PathLike):
        path = Path(value)
        return path.name, path.read_bytes()
    if isinstance(value, bytes | bytearray | memoryview):
        return name, bytes(value)
    if hasattr(value, "read"):
        data = value.read()
        if not isinstance(data, bytes):
            raise TypeError(f"{name}: the file object must be opened in binary mode ('rb')")
        return Path(getattr(value, "name", name)).name or name, data
    return None


def png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    (image if image.mode in PNG_MODES else image.convert("RGB")).save(buffer, format="PNG")
    return buffer.getvalue()


def wav_bytes(samples: Any, rate: int) -> bytes:
    """A waveform ([frames] or [frames, channels]; float in [-1, 1] or int16) → WAV: float stays float
    (soundfile) or becomes 16-bit PCM (the stdlib's wave, when soundfile is not installed)."""
    import numpy as np  # a waveform is a numpy array, so numpy is installed

    array = np.asarray(samples)
    if array.ndim not in (1, 2) or array.size == 0:
        raise ValueError(f"audio waveform must be [frames] or [frames, channels], got shape {array.shape}")
    if array.dtype.kind != "f" and array.dtype != np.int16:
        raise TypeError(f"audio waveform must be float (in [-1, 1]) or int16, got {array.dtype}")
    if rate <= 0:
        raise ValueError(f"audio sample rate must be positive, got {rate}")
    try:
        import soundfile
    except ImportError:  # soundfile is optional; the stdlib writes 16-bit PCM
        soundfile = None
    buffer = io.BytesIO()
    if soundfile is not None:
        soundfile.write(buffer, array, rate, format="WAV", subtype="FLOAT" if array.dtype.kind == "f" else "PCM_16")
        return buffer.getvalue()
    pcm = array if array.dtype == np.int16 else np.round(np.clip(array, -1.0, 1.0) * 32767)
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1 if array.ndim == 1 else array.shape[1])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())  # [frames, channels]: interleaved
    return buffer.getvalue()


def media_file(modality: str, value: Any) -> tuple[str, bytes]:
    """An image or audio input → (filename, encoded file bytes)."""
    found = _file_bytes(value, modality)
    if found is not None:
        return found
    image_type = _pil_image_type()
    if modality == "image" and image_type is not None and isinstance(value, image_type):
        return "image.png", png_bytes(value)
    if modality == "audio" and _is_waveform(value):
        return "audio.wav", wav_bytes(value[0], int(value[1]))
    accepted = {"image": " or a PIL image", "audio": " or a (numpy waveform, sample rate) tuple"}.get(modality)
    what = f"a path, bytes, a binary file{accepted}" if accepted else "a path, bytes or a binary file"
    raise TypeError(f"{modality} must be {what}; got {type(value).__name__}")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"text must be a str, got {type(value).__name__}")
    return value


def multipart_files(
    image: Any = None, audio: Any = None, text: str | None = None, video: Any = None
) -> dict[str, tuple]:
    """One item as httpx `files=`: the text goes as a plain form field, so even a text-only item is multipart."""
    files: dict[str, tuple] = {}
    for modality, value in (("image", image), ("audio", audio), ("video", video)):
        if value is not None:
            filename, data = media_file(modality, value)
            files[modality] = (filename, data, mimetypes.guess_type(filename)[0] or "application/octet-stream")
    if text is not None:
        files["text"] = (None, _text(text))
    if not files:
        raise ValueError("give at least one of image, audio, text, video")
    return files


def json_item(item: Mapping[str, Any], index: int) -> dict[str, str]:
    """One item of a batch as the server's JSON: media base64-encoded, text as is."""
    unknown = sorted(set(item) - set(MODALITIES))
    if unknown:
        raise ValueError(f"items[{index}] has unknown keys {unknown}; expected image, audio, text, video")
    out = {}
    for modality in FILES:
        if item.get(modality) is not None:
            out[modality] = base64.b64encode(media_file(modality, item[modality])[1]).decode("ascii")
    if item.get("text") is not None:
        out["text"] = _text(item["text"])
    return out
