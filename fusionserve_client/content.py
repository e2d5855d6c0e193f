"""Items → the content arrays that `/v1/embeddings`, `/v1/rerank` and `/v1/score` take
(docs/protocols.md, "OpenAI embeddings"): a str stays a str; an item `{"image", "audio", "text", "video"}` becomes
one part per modality, media inline (image_url / video_url as data: URLs, input_audio as base64 with its format)."""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Mapping
from typing import Any

from fusionserve_client.inputs import MODALITIES, media_file

AUDIO_FORMATS = ((b"RIFF", "wav"), (b"fLaC", "flac"), (b"OggS", "ogg"))  # the containers input_audio names


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _data_url(filename: str, data: bytes, fallback: str) -> str:
    # the server sniffs the bytes; the media type is for the reader of the request
    kind = mimetypes.guess_type(filename)[0] or fallback
    return f"data:{kind};base64,{_b64(data)}"


def _audio_format(filename: str, data: bytes) -> str:
    for magic, name in AUDIO_FORMATS:
        if data.startswith(magic):
            return name
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    return {"oga": "ogg"}.get(suffix, suffix) if suffix in ("wav", "flac", "ogg", "oga") else "wav"


def content(value: Any, where: str) -> str | list[dict]:
    """A query or a document: a str as it is, an item as its content array (one part per given modality)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, Mapping):
        kind = type(value).__name__
        raise TypeError(f"{where} must be a str or an item (a dict of image, audio, text, video), not {kind}")
    unknown = sorted(set(value) - set(MODALITIES))
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; expected image, audio, text, video")
    parts: list[dict] = []
    if value.get("text") is not None:
        if not isinstance(value["text"], str):
            raise TypeError(f"{where}.text must be a str, got {type(value['text']).__name__}")
        parts.append({"type": "text", "text": value["text"]})
    if value.get("image") is not None:
        name, data = media_file("image", value["image"])
        parts.append({"type": "image_url", "image_url": {"url": _data_url(name, data, "image/png")}})
    if value.get("audio") is not None:
        name, data = media_file("audio", value["audio"])
        parts.append({"type": "input_audio", "input_audio": {"data": _b64(data), "format": _audio_format(name, data)}})
    if value.get("video") is not None:
        name, data = media_file("video", value["video"])
        parts.append({"type": "video_url", "video_url": {"url": _data_url(name, data, "video/mp4")}})
    if not parts:
        raise ValueError(f"{where}: give at least one of image, audio, text, video")
    return parts
