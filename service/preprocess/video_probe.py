"""What a video's container header says, checked before a frame or a sample is decoded: which streams are
used, their codecs, the picture's size, the clip's length, and what segmenting it would cost (docs/bad-input.md
rows 40–44). Everything here reads the header, or at most demuxes packets without decoding them."""

from __future__ import annotations

import time
from dataclasses import dataclass

import av

from service.errors import DeadlineExceeded, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.preprocess.video_plan import VideoInputs, VideoLimits, sample_times, segment_bounds

# A declared duration may be off by a frame or an audio codec's priming; past this it is a lie (422)
LIE_SLACK_S, LIE_SLACK_SHARE = 1.0, 0.05


@dataclass
class Probe:
    """The streams decoding uses (None: absent, or the bundle has no encoder for it) and the clip's timeline:
    seconds are counted from `start` (the container's first timestamp), so picture and sound stay in sync.
    The streams are PyAV objects of the probed container: usable only while it is open (the timeline after)."""

    picture: av.video.stream.VideoStream | None
    sound: av.audio.stream.AudioStream | None
    start: float
    duration: float  # the clip's declared seconds: what segmentation cuts
    bounds: list[tuple[float, float]]  # [(start_s, end_s)] per segment
    picture_end: float  # where the picture stream says it ends (its own duration, else the clip's)
    sound_end: float

    @property
    def slack(self) -> float:
        return max(LIE_SLACK_S, LIE_SLACK_SHARE * self.duration)

    def cutoff(self, limits: VideoLimits) -> float:
        """No frame or sample past this is decoded: the declared length plus slack, never past the limit."""
        return min(self.duration + self.slack, max(self.duration, limits.max_seconds))


def _seconds(stream) -> float | None:
    if stream is None or not stream.duration or stream.time_base is None:
        return None
    return float(stream.duration * stream.time_base)


def _codec(stream, allowed: tuple[str, ...], setting: str, field: str) -> None:
    """415 unless the stream's codec (FFmpeg's canonical name, or its decoder's) is on the allow-list."""
    codec = stream.codec_context.codec
    if codec.canonical_name not in allowed and codec.name not in allowed:
        kind = "video" if stream.type == "video" else "audio"
        raise UnsupportedMediaType(f"{field}: {kind} codec {codec.canonical_name} is not accepted ({setting}: "
                                   f"{', '.join(allowed)})", field)  # fmt: skip


def _streams(container, inputs: VideoInputs, field: str):
    """The first real picture stream (not cover art) and the first sound stream, each only if the bundle has
    the encoder that reads it."""
    pictures = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    sounds = list(container.streams.audio)
    if not pictures and not sounds:
        raise InvalidInput(f"{field} has neither a video nor an audio stream", field)
    picture = pictures[0] if pictures and inputs.image is not None else None
    sound = sounds[0] if sounds and inputs.audio is not None else None
    if picture is None and sound is None:
        has = "only a video stream" if pictures else "only an audio stream"
        reads = "no image encoder" if pictures else "no audio encoder"
        raise InvalidInput(f"{field} has {has} and this model has {reads}: nothing in it can be read", field)
    return picture, sound


def _scanned_duration(container, streams, limit: float, deadline: float | None, field: str) -> float:
    """A container that declares no length (a live WebM recording): the end of its last packet, read without
    decoding, stopped as soon as it passes the limit."""
    start = (container.start_time or 0) / av.time_base
    end = 0.0
    for packet in container.demux(*streams):
        check_deadline(deadline, field)
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None or packet.time_base is None:
            continue
        end = max(end, float((stamp + (packet.duration or 0)) * packet.time_base) - start)
        if end > limit:
            raise _too_long(f"runs past {limit:g} s", limit, field)
    return end


def check_deadline(deadline: float | None, field: str) -> None:
    """Called between frames and packets: a long video must not outlive its request."""
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded(f"{field}: the request's deadline passed while decoding the video", field)


def _too_long(what: str, limit: float, field: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"{field} {what}; the limit is {limit:g} seconds (max_video_seconds)", field)


def _check_size(picture, limits: VideoLimits, field: str) -> None:
    width, height = picture.codec_context.width, picture.codec_context.height
    check_pixels(width, height, limits, field)
    if width < 1 or height < 1:
        raise InvalidInput(f"{field}: the video stream has no picture size ({width}x{height})", field)


def check_pixels(width: int, height: int, limits: VideoLimits, field: str) -> None:
    if width * height > limits.max_frame_pixels:
        raise PayloadTooLarge(f"{field}'s frames are {width}x{height} = {width * height} pixels; the limit is "
                              f"{limits.max_frame_pixels} pixels (max_video_frame_pixels)", field)  # fmt: skip


def _check_cost(probe: Probe, inputs: VideoInputs, limits: VideoLimits, field: str) -> None:
    segments = len(probe.bounds)
    if segments > limits.max_segments:
        raise PayloadTooLarge(f"{field} is {segments} segments of {inputs.segment_s:g} s (overlap "
                              f"{inputs.overlap_s:g} s); the limit is {limits.max_segments} (max_video_segments)",
                              field)  # fmt: skip
    if probe.picture is None:
        return
    kept = sum(len(sample_times(start, end, inputs.video)) for start, end in probe.bounds)
    if kept > limits.max_frames:
        rate = inputs.video.frames_per_second
        raise PayloadTooLarge(f"{field} would keep {kept} frames ({rate:g} a second over {segments} segments); "
                              f"the limit is {limits.max_frames} (max_video_frames)", field)  # fmt: skip


def probe(container, inputs: VideoInputs, limits: VideoLimits, field: str) -> Probe:
    """Every check the header allows, cheapest first; raises the FusionError of the first that fails."""
    picture, sound = _streams(container, inputs, field)
    for stream, allowed, setting in ((picture, limits.video_codecs, "video_codecs"),
                                     (sound, limits.audio_codecs, "audio_codecs")):  # fmt: skip
        if stream is not None:
            _codec(stream, allowed, setting, field)
    if picture is not None:
        _check_size(picture, limits, field)
    used = [stream for stream in (picture, sound) if stream is not None]
    declared = container.duration / av.time_base if container.duration else None
    declared = declared or max((_seconds(stream) or 0.0 for stream in used), default=0.0) or None
    if declared is None:
        declared = _scanned_duration(container, used, limits.max_seconds, inputs.deadline, field)
    if declared > limits.max_seconds:
        raise _too_long(f"is {declared:.1f} s long", limits.max_seconds, field)
    if declared <= 0:
        raise InvalidInput(f"{field} is empty: its streams last 0 s", field)
    result = Probe(picture, sound, (container.start_time or 0) / av.time_base, declared,
                   segment_bounds(declared, inputs.segment_s, inputs.overlap_s),
                   _seconds(picture) or declared, _seconds(sound) or declared)  # fmt: skip
    _check_cost(result, inputs, limits, field)
    return result
