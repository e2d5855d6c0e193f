"""Small real video clips written with PyAV for tests and benches (no files shipped).

Every clip's picture encodes what a test checks, whatever the content:
- a red MARKER square in the top-left corner of the picture as displayed (rotation tests: where it lands);
- a grey TIME BAND along the bottom whose level is 255 * t / seconds at the frame's own timestamp t
  (`read_time` inverts it), so a test knows which frame a decoder picked;
- content "digits": a big seven-segment digit in the middle — `digits` are shown in order, each for an equal
  share of the clip (digits=(1, 2) over 4 s: 1 in [0, 2), 2 in [2, 4)), so segments have labels;
  "motion": a drifting colour gradient with moving discs (the benches' natural-looking footage, which
  compresses like camera footage rather than flat colour); "noise": seeded random pixels (worst case for a codec).
The sound is a sine at `tone_hz` whose amplitude rises linearly from 0.05 to 0.5 over the clip (`tone_amplitude`),
so a test can tell which seconds a segment's sound came from.
"""

from __future__ import annotations

import math
import struct
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# the container's usual codecs when vcodec / acodec are not given
FAMILY = {
    "mp4": ("mp4", "libx264", "aac"),
    "mov": ("mov", "libx264", "pcm_s16le"),
    "webm": ("webm", "libvpx-vp9", "libopus"),
    "mkv": ("matroska", "libsvtav1", "libopus"),
    "avi": ("avi", "mpeg4", "pcm_s16le"),
}
_OPTIONS = {  # fast settings at high quality: tests read pixel levels back
    "libx264": {"preset": "veryfast", "crf": "16"},
    "libx265": {"preset": "ultrafast", "crf": "16", "x265-params": "log-level=none"},
    "hevc": {"preset": "ultrafast", "crf": "16", "x265-params": "log-level=none"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "16"},
    "libsvtav1": {"preset": "12", "crf": "20"},
}
SAMPLE_RATE = 48_000  # every encoder here takes it (Opus only takes 48 kHz)
MARKER = (255, 0, 0)
# seven-segment layout: segment -> (x0, y0, x1, y1) in a 4 x 7 grid; digit -> segments lit
_SEGMENTS = {"a": (0, 0, 4, 1), "b": (3, 0, 4, 4), "c": (3, 3, 4, 7), "d": (0, 6, 4, 7), "e": (0, 3, 1, 7),
             "f": (0, 0, 1, 4), "g": (0, 3, 4, 4)}  # fmt: skip
_LIT = ("abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg")


def frame_times(fps: float, seconds: float, vfr: bool = False) -> list[float]:
    """The timestamps (s) of the frames written: every 1/fps, or (vfr) gaps cycling 0.4, 1.6, 1.0 x 1/fps."""
    gaps = (0.4, 1.6, 1.0) if vfr else (1.0,)
    times, t, k = [], 0.0, 0
    while t < seconds - 1e-9:
        times.append(round(t, 3))
        t += gaps[k % len(gaps)] / fps
        k += 1
    return times


def tone_amplitude(t: np.ndarray | float, seconds: float) -> np.ndarray | float:
    return 0.05 + 0.45 * np.clip(np.asarray(t) / seconds, 0.0, 1.0)


def time_level(t: float, seconds: float) -> int:
    return int(round(255 * t / seconds))


def read_time(rgb: np.ndarray, seconds: float) -> float:
    """The timestamp a decoded upright frame [H,W,3] (uint8 levels) carries in its time band."""
    height, width = rgb.shape[:2]
    band = rgb[height - max(2, height // 8) + 1 :, width // 4 : 3 * width // 4]
    return float(band.astype(np.float64).mean() / 255 * seconds)


def _digit(canvas: np.ndarray, digit: int) -> None:
    height, width = canvas.shape[:2]
    cell = max(1, min(width // 8, height // 12))  # the digit: 4 x 7 cells, centred
    left, top = (width - 4 * cell) // 2, (height - 7 * cell) // 2
    for name in _LIT[digit % 10]:
        x0, y0, x1, y1 = _SEGMENTS[name]
        canvas[top + y0 * cell : top + y1 * cell, left + x0 * cell : left + x1 * cell] = 240


def draw_frame(t: float, *, size: tuple[int, int], seconds: float, content: str, digits: tuple[int, ...],
               seed: int = 0) -> np.ndarray:  # fmt: skip
    """The upright picture at time t: [H,W,3] uint8."""
    width, height = size
    if content == "digits":
        canvas = np.full((height, width, 3), 16, np.uint8)
        _digit(canvas, digits[min(len(digits) - 1, int(len(digits) * t / seconds))])
    elif content == "motion":
        y, x = np.mgrid[0:height, 0:width].astype(np.float32)
        phase = 2 * math.pi * t / max(seconds, 1e-3)
        red = 128 + 100 * np.sin(x / width * 3 + phase)
        green = 128 + 100 * np.sin(y / height * 2 - phase)
        blue = 128 + 60 * np.cos((x + y) / (width + height) * 4 + phase / 2)
        canvas = np.stack([red, green, blue], -1)
        for k in range(3):  # discs drifting on their own paths
            cx = width * (0.5 + 0.35 * math.sin(phase + 2.1 * k))
            cy = height * (0.5 + 0.35 * math.cos(1.3 * phase + k))
            canvas[(x - cx) ** 2 + (y - cy) ** 2 < (min(width, height) / (6 + 2 * k)) ** 2] = (40 + 80 * k, 220, 60)
        canvas = canvas.clip(0, 255).astype(np.uint8)
    elif content == "noise":
        canvas = np.random.default_rng([seed, int(t * 1000)]).integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        raise ValueError(f"content must be digits, motion or noise, got {content!r}")
    mark = max(4, min(width, height) // 5)
    canvas[:mark, :mark] = MARKER
    canvas[height - max(2, height // 8) :, :] = time_level(t, seconds)
    return canvas


def _video_stream(out, vcodec: str, size: tuple[int, int], fps: float, rotation: int, vfr: bool, gop: int | None):
    stream = out.add_stream(vcodec, rate=Fraction(fps).limit_denominator(1000), options=_OPTIONS.get(vcodec, {}))
    stored = size if rotation % 180 == 0 else size[::-1]
    stream.width, stream.height = stored
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = gop or max(1, round(fps))  # a keyframe a second unless told
    if vcodec in ("mpeg4", "libvpx"):
        stream.codec_context.bit_rate = 4_000_000 * max(1, size[0] * size[1] // (320 * 240))
    if vfr:
        stream.codec_context.time_base = Fraction(1, 1000)
    if rotation:
        stream.set_display_rotation(rotation)
    return stream


def _audio_stream(out, acodec: str, channels: int):
    stream = out.add_stream(acodec, rate=SAMPLE_RATE, layout="stereo" if channels == 2 else "mono")
    if acodec in ("aac", "libopus", "mp3", "libmp3lame"):
        stream.codec_context.bit_rate = 128_000
    return stream


def _sound_frames(seconds: float, tone_hz: float, channels: int, chunk: int = 4800):
    total = int(round(seconds * SAMPLE_RATE))
    for start in range(0, total, chunk):
        t = np.arange(start, min(total, start + chunk)) / SAMPLE_RATE
        wave = (tone_amplitude(t, seconds) * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.tile(wave, channels)[None], format="flt",
                                           layout="stereo" if channels == 2 else "mono")  # fmt: skip
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
        yield start / SAMPLE_RATE, frame


def write_video(path, *, container: str = "mp4", vcodec: str | None = None, acodec: str | None = None,
                size: tuple[int, int] = (64, 64), fps: float = 10, seconds: float = 2.0, audio: bool = True,
                video: bool = True, rotation: int = 0, vfr: bool = False, content: str = "digits",
                digits: tuple[int, ...] = (3,), tone_hz: float = 440, channels: int = 2, gop: int | None = None,
                seed: int = 0) -> Path:  # fmt: skip
    """Write a clip: `size` (width, height) and the picture are as DISPLAYED; rotation (degrees counter-clockwise,
    a multiple of 90) stores the pixels turned the other way with a display matrix saying `rotation`, as a phone
    does, so only a decoder that applies the matrix sees the marker top-left. vcodec / acodec default to the
    container's family (FAMILY). gop: frames between keyframes (None: one a second)."""
    fmt, default_v, default_a = FAMILY[container]
    path = Path(path)
    with av.open(str(path), "w", format=fmt) as out:
        vstream = _video_stream(out, vcodec or default_v, size, fps, rotation, vfr, gop) if video else None
        astream = _audio_stream(out, acodec or default_a, channels) if audio else None
        events = []  # (time, kind, payload) in time order, so the muxer interleaves as a real recorder does
        if vstream is not None:
            events += [(t, 0, t) for t in frame_times(fps, seconds, vfr)]
        if astream is not None:
            events += [(t, 1, frame) for t, frame in _sound_frames(seconds, tone_hz, channels)]
        for t, kind, payload in sorted(events, key=lambda event: (event[0], event[1])):
            if kind == 1:
                out.mux(astream.encode(payload))
                continue
            picture = draw_frame(t, size=size, seconds=seconds, content=content, digits=digits, seed=seed)
            stored = np.ascontiguousarray(np.rot90(picture, k=-(rotation // 90)))  # turned clockwise by rotation
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts = round(t * 1000) if vfr else round(t * fps)
            out.mux(vstream.encode(frame))
        for stream in (vstream, astream):
            if stream is not None:
                out.mux(stream.encode(None))
    return path


def video_bytes(**options) -> bytes:
    """write_video's clip as bytes (written to a temporary file: some muxers seek back to finish the header)."""
    container = options.get("container", "mp4")
    with tempfile.TemporaryDirectory() as folder:
        return write_video(Path(folder) / f"clip.{container}", **options).read_bytes()


def with_declared_seconds(data: bytes, seconds: float) -> bytes:
    """A Matroska/WebM clip (write_video's: timecode scale 1 ms) whose header declares `seconds` instead of its
    real length: its Segment Info Duration element (id 0x4489, an 8- or 4-byte float) rewritten."""
    for size, code in ((b"\x88", ">d"), (b"\x84", ">f")):
        at = data.find(b"\x44\x89" + size)
        if at >= 0:
            body = at + 3
            return data[:body] + struct.pack(code, seconds * 1000) + data[body + struct.calcsize(code) :]
    raise ValueError("no Matroska Duration element in these bytes")


def without_declared_seconds(data: bytes) -> bytes:
    """A Matroska/WebM clip with no Duration element, as a live recording (a browser's MediaRecorder) is: the
    element turned into an EBML Void of the same size."""
    at = data.find(b"\x44\x89\x88")
    if at < 0:
        raise ValueError("no 8-byte Matroska Duration element in these bytes")
    return data[:at] + b"\xec\x89" + bytes(9) + data[at + 11 :]
