"""Where a video is cut and sampled: pure arithmetic shared by the server's decoding and the trainer
(docs/bundle-format.md "Video"), so a segment means the same seconds in both.

A clip of `duration` seconds is cut into segments of `segment_s` that start every `segment_s - overlap_s`
seconds; a clip no longer than one segment is one segment, and the last segment ends at the clip's end.
Each segment keeps frames at the bundle's `frames_per_second`, at most `max_frames_per_segment` spread evenly,
each at the middle of its share of the segment (a 4 s segment at 1 frame/s: 0.5, 1.5, 2.5, 3.5 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from service.manifest import AudioPreprocess, ImagePreprocess, VideoPreprocess

# a tail shorter than this share of a segment joins the segment before it (no 0.1 s segment at the end)
MIN_TAIL_SHARE = 0.25
# the server's defaults (service/settings.py), which the trainer decodes its clips within too
MAX_VIDEO_SECONDS = 300.0
MAX_FRAME_PIXELS = 1920 * 1088
VIDEO_CODECS = ("h264", "hevc", "vp8", "vp9", "av1", "mpeg4")  # FFmpeg's codec names
AUDIO_CODECS = ("aac", "opus", "mp3", "mp3float", "vorbis", "flac", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le",
                "pcm_u8")  # fmt: skip


@dataclass(frozen=True)
class VideoInputs:
    """What decoding one video needs: the bundle's video spec with the request's segmentation applied, the
    specs its frames and sound go through (None: the bundle has no such encoder, so none is decoded), and the
    request's deadline (time.monotonic(); None: none). `stats` is filled by decoding (seconds of video,
    frames decoded and kept, seconds per stage) and read by prepare_item into PreparedItem.stats."""

    video: VideoPreprocess
    image: ImagePreprocess | None
    audio: AudioPreprocess | None
    segment_s: float
    overlap_s: float
    deadline: float | None = None
    stats: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class VideoLimits:
    """The server's bounds on one video (service/settings.py's max_video_*, video_codecs, audio_codecs)."""

    max_seconds: float
    max_frame_pixels: int
    max_frames: int
    max_segments: int
    video_codecs: tuple[str, ...]
    audio_codecs: tuple[str, ...]

    @classmethod
    def of(cls, settings: Any, video: VideoPreprocess) -> VideoLimits:
        return cls(
            min(settings.max_video_seconds, video.max_seconds), settings.max_video_frame_pixels,
            settings.max_video_frames, settings.max_video_segments, tuple(settings.video_codecs),
            tuple(settings.audio_codecs),
        )  # fmt: skip


def segment_bounds(duration: float, segment_s: float, overlap_s: float) -> list[tuple[float, float]]:
    """[(start_s, end_s)] covering [0, duration]; one segment when duration <= segment_s."""
    if duration <= segment_s:
        return [(0.0, float(duration))]
    step = segment_s - overlap_s
    bounds, start = [], 0.0
    while start + segment_s < duration:
        bounds.append((start, start + segment_s))
        start += step
    if duration - bounds[-1][1] < MIN_TAIL_SHARE * segment_s and start > bounds[-1][0]:
        bounds[-1] = (bounds[-1][0], float(duration))  # a short tail: the last segment runs to the end
    else:
        bounds.append((start, float(duration)))
    return bounds


def sample_times(start: float, end: float, spec: VideoPreprocess) -> list[float]:
    """The times (s) of the frames kept in segment [start, end): frames_per_second, at most
    max_frames_per_segment, each at the middle of its share of the segment; at least one."""
    count = max(1, min(spec.max_frames_per_segment, math.ceil((end - start) * spec.frames_per_second - 1e-9)))
    share = (end - start) / count
    return [start + (k + 0.5) * share for k in range(count)]
