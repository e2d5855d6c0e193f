"""The frames a video keeps: for each sample time, the frame on screen then (the last one whose timestamp is not
after it; timestamps, never frame counts, so variable frame rate is exact), turned upright by the display matrix
and preprocessed as the image encoder's spec says (image.preprocess_image).

Decoding goes forward from a keyframe. For each target: when a keyframe lies between what was decoded last and
the target, seek to it (everything before it is useless); otherwise keep decoding. Without an index to say
where keyframes are, seek only when the target is more than SEEK_GAP_S ahead (docs/design-choices.md has the
figures: seeking against decoding every frame)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator

import av
import numpy as np
from PIL import Image

from service.errors import InvalidInput
from service.manifest import ImagePreprocess
from service.preprocess.image import preprocess_image
from service.preprocess.video_plan import VideoLimits
from service.preprocess.video_probe import Probe, check_deadline, check_pixels

SEEK_GAP_S = 2.0  # no index: a GOP is usually 1–10 s; seeking for less costs a decoder flush for nothing
_EPSILON = 1e-6
_UPRIGHT = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


def upright(frame: av.VideoFrame) -> Image.Image:
    """The picture as displayed: the display matrix's rotation is counter-clockwise, as PIL's transposes."""
    image = frame.to_image()
    turn = round((frame.rotation or 0) / 90) * 90 % 360
    return image.transpose(_UPRIGHT[turn]) if turn else image


class FrameReader:
    """Decodes one picture stream forward, seeking when a target is past the next keyframe. Holds two decoded
    frames at most (the one on screen and the one after it), whatever the video's length."""

    def __init__(self, container, probe: Probe, limits: VideoLimits, deadline: float | None, field: str):
        self.container, self.stream, self.start = container, probe.picture, probe.start
        self.cutoff, self.limits, self.deadline, self.field = probe.cutoff(limits), limits, deadline, field
        self.declared = probe.duration
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.interval = float(1 / rate) if rate else 0.04  # one frame's length, where a frame has none
        self.keyframes = self._keyframes()
        self.packets: Iterator | None = None
        self.pending: list = []
        self.current = self.ahead = None  # (time, frame): on screen at the last target, and the next one
        self.decoded, self.end = 0, 0.0

    def _keyframes(self) -> list[float]:
        """Keyframe times from the demuxer's index (MP4's sample table, AVI's idx1, Matroska's cues)."""
        base = self.stream.time_base
        times = sorted(float(e.timestamp * base) - self.start for e in self.stream.index_entries if e.is_keyframe)
        return times if len(times) > 1 else []  # one entry (a cue for the first cluster) says nothing

    def _time(self, frame) -> float:
        if frame.pts is None:  # some AVI files carry none: one frame after the last one decoded
            return self._position(-self.interval) + self.interval
        return float(frame.pts * frame.time_base) - self.start

    def _position(self, before_any: float) -> float:
        """The time of the last frame decoded (`before_any` when none is held)."""
        held = self.ahead or self.current
        return held[0] if held else before_any

    def _next(self) -> tuple[float, av.VideoFrame] | None:
        while not self.pending:
            check_deadline(self.deadline, self.field)
            packet = next(self.packets, None)
            if packet is None:
                return None
            self.pending = list(packet.decode())
        frame = self.pending.pop(0)
        self.decoded += 1
        check_pixels(frame.width, frame.height, self.limits, self.field)  # a stream may change size mid-way
        stamp = self._time(frame)
        self._past(stamp)
        self.end = max(self.end, stamp + self.interval)
        return stamp, frame

    def _past(self, stamp: float) -> None:
        if stamp > self.cutoff:
            raise InvalidInput(f"{self.field}: the video stream goes on at {stamp:.1f} s but its header says "
                               f"{self.declared:.1f} s", self.field)  # fmt: skip

    def _should_seek(self, target: float) -> bool:
        if self.packets is None:
            return True
        position = self._position(-1.0)
        if position >= target - _EPSILON:
            return False
        if self.keyframes:
            keyframe = self.keyframes[max(0, bisect.bisect_right(self.keyframes, target + _EPSILON) - 1)]
            return keyframe > position + _EPSILON
        return target - position > SEEK_GAP_S

    def _seek(self, target: float) -> None:
        """To the keyframe at or before target; where an index counts in decode order (MP4's keyframe may show
        after its decode time) and the first frame is after the target, again from a second earlier."""
        back = 0.0
        while True:
            offset = int((max(0.0, target - back) + self.start) / self.stream.time_base)
            self.container.seek(offset, stream=self.stream, backward=True)
            self.packets, self.pending = self.container.demux(self.stream), []
            self.current, self.ahead = None, self._next()
            if self.ahead is None or self.ahead[0] <= target + _EPSILON or target - back <= 0:
                return
            back += 1.0

    def frame_at(self, target: float) -> tuple[float, av.VideoFrame] | None:
        """The frame on screen at `target` seconds (the first frame when it starts later; the last at the end)."""
        if self._should_seek(target):
            self._seek(target)
        while True:
            if self.ahead is None and self.current is not None:
                self.ahead = self._next()
            if self.ahead is None or (self.ahead[0] > target + _EPSILON and self.current is not None):
                return self.current or self.ahead
            self.current, self.ahead = self.ahead, None

    def finish(self, declared_end: float, slack: float) -> None:
        """Read the packets left without decoding them: a stream that runs past its header's length, or ends
        well before it (truncated), is refused."""
        for packet in self.packets or ():
            check_deadline(self.deadline, self.field)
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None or packet.time_base is None:
                continue
            self._past(float(stamp * packet.time_base) - self.start)
            self.end = max(self.end, float((stamp + (packet.duration or 0)) * packet.time_base) - self.start)
        if self.end < declared_end - slack:
            raise InvalidInput(f"{self.field}: the video stream ends at {self.end:.1f} s but its header says "
                               f"{declared_end:.1f} s (truncated?)", self.field)  # fmt: skip


def read_frames(container, probe: Probe, targets: list[tuple[float, int]], spec: ImagePreprocess,
                limits: VideoLimits, deadline: float | None, field: str) -> tuple[list[np.ndarray], int]:  # fmt: skip
    """Each target (time, segment), in time order → its preprocessed frame [3,S,S]; and how many frames were
    decoded. A frame picked by two targets (overlapping segments) is converted once."""
    reader = FrameReader(container, probe, limits, deadline, field)
    kept, last = [], (None, None)
    for target, _segment in targets:
        picked = reader.frame_at(target)
        if picked is None:
            raise InvalidInput(f"{field}: the video stream has no frames", field)
        if picked[1] is not last[0]:
            last = (picked[1], preprocess_image(upright(picked[1]), spec))
        kept.append(last[1])
    reader.finish(probe.picture_end, probe.slack)
    return kept, reader.decoded
