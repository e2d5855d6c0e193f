"""Video bytes → VideoArrays (service/items.py) with PyAV. Being written: the decoding helper replaces this."""

from __future__ import annotations

from service.items import VideoArrays
from service.preprocess.video_plan import VideoInputs, VideoLimits

ACCEPTED_VIDEO_FORMATS = ("MP4/MOV", "WebM/MKV", "AVI")


def sniff_video_format(data: bytes) -> str | None:
    """The container `data` is, by its magic bytes: MP4/MOV (an ftyp box), WebM/MKV (EBML), AVI (RIFF AVI)."""
    if len(data) >= 12 and data[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return "MP4/MOV"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "WebM/MKV"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "AVI"
    return None


def decode_video(data: bytes, inputs: VideoInputs, limits: VideoLimits, *, field: str = "video") -> VideoArrays:
    raise NotImplementedError("decode_video is being written")
