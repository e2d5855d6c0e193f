"""A training clip → the server's VideoArrays, with the server's own decoding (service.preprocess.video).

Training segments and samples a clip exactly as a server answering with the exported bundle would by default:
the same VideoPreprocess (from the config's video_* fields, written into the manifest), the same image and
audio specs, the same decode_video. The limits are the server's defaults, except the per-request caps on kept
frames and segments, which bound a request's cost, not what a clip may be: a long training clip is not refused
for having many segments.
"""

from __future__ import annotations

import hashlib

from service.items import VideoArrays
from service.manifest import AudioPreprocess, ImagePreprocess, VideoPreprocess
from service.preprocess.video import decode_video
from service.preprocess.video_plan import (
    AUDIO_CODECS,
    MAX_FRAME_PIXELS,
    MAX_VIDEO_SECONDS,
    VIDEO_CODECS,
    VideoInputs,
    VideoLimits,
)

LIMITS = VideoLimits(
    max_seconds=MAX_VIDEO_SECONDS,
    max_frame_pixels=MAX_FRAME_PIXELS,
    max_frames=1 << 16,
    max_segments=1 << 12,
    video_codecs=VIDEO_CODECS,
    audio_codecs=AUDIO_CODECS,
)
# validation decodes at the smallest useful image size: the container, codecs and sizes are still checked
_CHECK = VideoInputs(VideoPreprocess(), ImagePreprocess(size=16), AudioPreprocess(), 4.0, 0.0)


def video_preprocess(cfg) -> VideoPreprocess:
    """The config's video_* fields as the bundle's VideoPreprocess (what the manifest declares)."""
    return VideoPreprocess(
        frames_per_second=cfg.video_fps, max_frames_per_segment=cfg.video_max_frames,
        segment_s=cfg.video_segment_s, overlap_s=cfg.video_overlap_s, max_seconds=MAX_VIDEO_SECONDS,
    )  # fmt: skip


def video_inputs(video: VideoPreprocess, image: ImagePreprocess | None, audio: AudioPreprocess | None) -> VideoInputs:
    """decode_video's inputs with the bundle's default segmentation (what a request without options gets)."""
    return VideoInputs(video, image, audio, video.segment_s, video.overlap_s)


def decode_clip(data: bytes, inputs: VideoInputs) -> VideoArrays:
    """One clip's frames (per the image spec), sound per segment (per the audio spec), segment bounds."""
    return decode_video(data, inputs, LIMITS, field="video")


def check_video(data: bytes) -> None:
    """Raises the server's FusionError when it would refuse the clip."""
    decode_video(data, VideoInputs(_CHECK.video, _CHECK.image, _CHECK.audio, 4.0, 0.0), LIMITS, field="video")


def inputs_digest(inputs: VideoInputs) -> str:
    """sha256 of what a clip's decoded arrays depend on besides its bytes: segmentation, sampling, both specs."""
    parts = [inputs.video.model_dump_json(), f"{inputs.segment_s}/{inputs.overlap_s}"]
    parts += [spec.model_dump_json() if spec is not None else "-" for spec in (inputs.image, inputs.audio)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()
