"""Video bytes → VideoArrays (service/items.py) with PyAV (docs/bad-input.md rows 40–46).

Order matters for safety, as for images: sniff the container from magic bytes and open it with that one
demuxer; check the header (streams, codecs, picture size, length, segments, frames kept) before anything is
decoded; then decode only the frames kept (video_frames.py) and the sound track (video_sound.py), checking the
deadline between frames and packets and never decoding past the declared length (plus slack) or the limit.
The bytes are spooled to a temporary file that FFmpeg reads and seeks in; it is removed before the answer,
whatever the answer, so a request holds its kept frames, not a decoded copy of the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time

import av
import numpy as np

from service.errors import FusionError, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.items import VideoArrays
from service.preprocess.video_frames import read_frames
from service.preprocess.video_plan import VideoInputs, VideoLimits, sample_times
from service.preprocess.video_probe import Probe, probe
from service.preprocess.video_sound import read_sound, segment_sound

ACCEPTED_VIDEO_FORMATS = ("MP4/MOV", "WebM/MKV", "AVI")
_ACCEPTED = ", ".join(ACCEPTED_VIDEO_FORMATS)
_DEMUXER = {"MP4/MOV": "mov", "WebM/MKV": "matroska", "AVI": "avi"}  # no other FFmpeg parser sees the bytes
# recognised only to name them in the 415
_OTHER_MAGIC = ((b"FLV", "FLV"), (b"\x47", "MPEG-TS"), (b"\x00\x00\x01\xba", "MPEG-PS"),
                (b"\x30\x26\xb2\x75", "ASF/WMV"), (b"GIF8", "GIF"), (b"OggS", "Ogg"))  # fmt: skip


def sniff_video_format(data: bytes) -> str | None:
    """The container `data` is, by its magic bytes: MP4/MOV (an ftyp box), WebM/MKV (EBML), AVI (RIFF AVI)."""
    if len(data) >= 12 and data[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free"):
        return "MP4/MOV"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "WebM/MKV"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "AVI"
    return None


def _unsupported(data: bytes, field: str) -> FusionError:
    if not data:
        return InvalidInput(f"{field}: the upload is empty; accepted: {_ACCEPTED}", field)
    named = next((f"{name} is" for magic, name in _OTHER_MAGIC if data.startswith(magic)), "the upload is not")
    return UnsupportedMediaType(f"{field}: {named} not a supported video container; accepted: {_ACCEPTED}", field)


def _check_riff_size(data: bytes, field: str) -> None:
    """An AVI cut short still opens: FFmpeg rebuilds its length from the frames present. Its RIFF header says
    how many bytes the first chunk holds (OpenDML files carry further chunks after it), so compare."""
    declared = int.from_bytes(data[4:8], "little") + 8
    if declared > len(data):
        raise InvalidInput(
            f"{field}: the AVI is truncated ({len(data)} of the {declared} bytes its header says)", field
        )


@contextlib.contextmanager
def spooled(data: bytes):
    """The bytes in a temporary file (FFmpeg seeks in it), removed on the way out, success or failure."""
    handle, path = tempfile.mkstemp(prefix="fusionserve-video-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        yield path
    finally:
        os.unlink(path)


def _targets(result: Probe, inputs: VideoInputs) -> list[tuple[float, int]]:
    """(time, segment) of every frame kept, in time order; none past where the picture stream ends."""
    targets = [(t, g) for g, (start, end) in enumerate(result.bounds) for t in sample_times(start, end, inputs.video)]
    return sorted(((t, g) for t, g in targets if t < result.picture_end), key=lambda target: target[0])


def _pictures(container, result: Probe, inputs: VideoInputs, limits: VideoLimits, field: str):
    """frames [N,3,S,S], frame_segment [N]; N = 0 where the picture is not read."""
    spec = inputs.image
    targets = _targets(result, inputs) if result.picture is not None else []
    if not targets:
        side, dtype = (spec.size, np.uint8 if spec.normalise == "graph" else np.float32) if spec else (1, np.float32)
        inputs.stats.update(video_frames_decoded=0.0, video_frames_kept=0.0, video_frames_s=0.0)
        return np.zeros((0, 3, side, side), dtype), np.zeros(0, np.int32)
    began = time.perf_counter()
    kept, decoded = read_frames(container, result, targets, spec, limits, inputs.deadline, field)
    order = sorted(range(len(targets)), key=lambda k: (targets[k][1], targets[k][0]))  # by segment, then time
    frames = np.stack([kept[k] for k in order])  # [N,3,S,S]
    segments = np.array([targets[k][1] for k in order], np.int32)  # [N]
    inputs.stats.update(video_frames_decoded=float(decoded), video_frames_kept=float(len(kept)),
                        video_frames_s=time.perf_counter() - began)  # fmt: skip
    return frames, segments


def _sound(path: str, fmt: str, result: Probe, index: int | None, inputs: VideoInputs, limits: VideoLimits,
           field: str):  # fmt: skip
    """audio [G,C,T], audio_length [G]; all lengths 0 where the sound (stream `index`) is not read."""
    began = time.perf_counter()
    samples = None
    if index is not None:
        with av.open(path, format=_DEMUXER[fmt]) as container:  # its own demuxer: the picture pass has seeked
            stream = next(s for s in container.streams.audio if s.index == index)
            samples = read_sound(container, stream, result, inputs.audio, limits, inputs.deadline, field)
    audio, lengths = segment_sound(samples, result.bounds, inputs.audio, field)
    inputs.stats["video_audio_s"] = time.perf_counter() - began
    return audio, lengths


def _decode(path: str, fmt: str, inputs: VideoInputs, limits: VideoLimits, field: str) -> VideoArrays:
    began = time.perf_counter()
    with av.open(path, format=_DEMUXER[fmt]) as container:
        result = probe(container, inputs, limits, field)
        inputs.stats.update(video_probe_s=time.perf_counter() - began, video_seconds=result.duration)
        frames, frame_segment = _pictures(container, result, inputs, limits, field)
        index = result.sound.index if result.sound is not None else None  # a stream dies with its container
    audio, audio_length = _sound(path, fmt, result, index, inputs, limits, field)
    if frames.shape[0] == 0 and not audio_length.any():
        raise InvalidInput(f"{field}: neither a frame nor a sound could be read from it", field)
    bounds = np.array(result.bounds, np.float32).reshape(-1, 2)  # [G,2]
    return VideoArrays(frames, frame_segment, bounds, audio, audio_length)


def decode_video(data: bytes, inputs: VideoInputs, limits: VideoLimits, *, field: str = "video") -> VideoArrays:
    """MP4/MOV, WebM/MKV or AVI bytes → VideoArrays: the frames kept per segment, preprocessed for the image
    encoder, and each segment's sound for the audio encoder; fills inputs.stats. Every rejection a FusionError."""
    fmt = sniff_video_format(data)
    if fmt is None:
        raise _unsupported(data, field)
    if fmt == "AVI":
        _check_riff_size(data, field)
    with spooled(data) as path:
        try:
            return _decode(path, fmt, inputs, limits, field)
        except FusionError:
            raise
        except MemoryError as exc:
            raise PayloadTooLarge(f"{field} needs more memory to decode than the server has", field) from exc
        except Exception as exc:  # untrusted bytes: av.FFmpegError (InvalidDataError…), ValueError, EOFError…
            reason = str(exc).replace(f": '{path}'", "").replace(path, "the upload")  # never the server's path
            raise InvalidInput(f"{field}: cannot decode {fmt} video (truncated or corrupt): {reason}", field) from exc
