"""Specs and limits for the video decoding tests: pictures kept at the clip's own size with identity
normalisation, so the pixels a test reads back are the decoded levels (tests/media_video.py's marker and time band)."""

from __future__ import annotations

import numpy as np

from service.manifest import AudioPreprocess, ImagePreprocess, VideoPreprocess
from service.preprocess.video import decode_video
from service.preprocess.video_plan import VideoInputs, VideoLimits
from service.settings import Settings
from tests.media_video import frame_times, read_time

PIXELS = ImagePreprocess(size=64, resize="stretch", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
WAVEFORM = AudioPreprocess(front_end="waveform", n_mels=1)
MEL = AudioPreprocess()
VIDEO = VideoPreprocess(frames_per_second=2, max_frames_per_segment=8, segment_s=1.0)


def limits(**changes) -> VideoLimits:
    base = VideoLimits.of(Settings(), VIDEO)
    return VideoLimits(**{**base.__dict__, **changes})


def inputs(*, image=PIXELS, audio=WAVEFORM, video=VIDEO, segment_s=1.0, overlap_s=0.0, deadline=None) -> VideoInputs:
    return VideoInputs(video, image, audio, segment_s, overlap_s, deadline)


def decode(data: bytes, given: VideoInputs | None = None, **limit_changes):
    return decode_video(data, given or inputs(), limits(**limit_changes), field="items[0].video")


def pictures(frames: np.ndarray) -> np.ndarray:
    """[N,3,S,S] identity-normalised → [N,S,S,3] uint8 levels."""
    return frames.transpose(0, 2, 3, 1).clip(0, 255).round().astype(np.uint8)


def on_screen(target: float, fps: float, seconds: float, vfr: bool = False) -> float:
    """The timestamp of the frame shown at `target`: the last one written at or before it."""
    return max(t for t in frame_times(fps, seconds, vfr) if t <= target + 1e-9)


def picked_times(frames: np.ndarray, seconds: float) -> list[float]:
    return [read_time(picture, seconds) for picture in pictures(frames)]
