"""The video bench's reference: what plain PyAV spends to get a clip's sampled frames as RGB, with no server.

The sample times are the server's own (service/preprocess/video_plan.py at the bundle's VideoPreprocess: 1 frame/s,
each at the middle of its second), so the reference and the server decode toward the same targets. Ways measured:
- `seek`: for each target, seek to the keyframe at or before it, decode forward to it, convert it to RGB.
- `seek_near`: the same, but a target no further than one keyframe interval past the last decoded frame is
  reached by decoding on (a seek there would land on the keyframe already passed and decode those frames again).
- `all_frames`: decode every frame and convert every one to RGB (what a naive reader does).
- `all_decoded`: decode every frame, convert only the targets.
- `audio`: decode the sound track and resample it to 16 kHz mono float (what the audio encoder's front end needs).
CPU seconds are the process's (time.process_time: every thread, FFmpeg's decoding threads included); each way opens
the file afresh. The codec's threading is PyAV's default, as decode_video's is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av

from service.manifest import VideoPreprocess
from service.preprocess.video_plan import sample_times, segment_bounds

AUDIO_RATE = 16_000


@dataclass(frozen=True)
class Decoded:
    """One way's result: frames decoded and converted, and the times (s) of the converted ones."""

    decoded: int
    converted: int
    times: tuple[float, ...]


def targets(duration: float, spec: VideoPreprocess = VideoPreprocess()) -> list[float]:
    """The seconds the server keeps a frame at for a clip of `duration` at the spec's default segmentation."""
    bounds = segment_bounds(duration, spec.segment_s, spec.overlap_s)
    return sorted({t for start, end in bounds for t in sample_times(start, end, spec)})


def frame_time(frame: av.VideoFrame) -> float:
    return float(frame.pts * frame.time_base)


class Reader:
    """Frames of one video stream in order, from wherever the last seek landed; one frame of look-ahead (the frame
    that showed a target had been passed is kept for the next target, not lost)."""

    def __init__(self, container, stream) -> None:
        self.container, self.stream = container, stream
        self.frames, self.ahead, self.decoded = iter(()), None, 0
        # the last frame's time, the keyframe it follows, and every keyframe time seen (across seeks: a seek's
        # landing point is a keyframe too, which is how the interval is learnt while seeking every GOP)
        self.last, self.last_key, self.keys = -1.0, None, set()

    def seek(self, target: float) -> None:
        self.container.seek(int(target / self.stream.time_base), stream=self.stream, backward=True)
        self.frames, self.ahead, self.last_key = self.container.decode(self.stream), None, None
        self.last = -1.0

    @property
    def interval(self) -> float:
        """The shortest gap between keyframes seen (0 until two are): where the next one may be, at the soonest."""
        keys = sorted(self.keys)
        return min((b - a for a, b in zip(keys, keys[1:], strict=False)), default=0.0)

    def near(self, target: float) -> bool:
        """Whether `target` comes before the next keyframe: a seek would land on the one already passed."""
        return self.last_key is not None and self.last <= target < self.last_key + self.interval

    def next_frame(self):
        frame = next(self.frames, None)
        if frame is not None:
            self.decoded += 1
            if frame.key_frame:
                self.last_key = frame_time(frame)
                self.keys.add(self.last_key)
        return frame

    def shown_at(self, target: float):
        """The last frame starting at or before `target` (the first one after it if none does)."""
        previous = None
        while (frame := self.ahead or self.next_frame()) is not None:
            self.ahead = None
            if frame_time(frame) > target + 1e-6:
                self.ahead = frame
                return previous or frame
            previous, self.last = frame, frame_time(frame)
        return previous


def decode_at(path: Path, times: list[float], *, near: bool) -> Decoded:
    """The frame shown at each time, as RGB [H,W,3]: a seek before each (`near`: unless decoding on reaches it)."""
    kept = []
    with av.open(str(path)) as container:
        reader = Reader(container, container.streams.video[0])
        for target in times:
            if not (near and reader.near(target)):
                reader.seek(target)
            frame = reader.shown_at(target)
            frame.to_ndarray(format="rgb24")
            kept.append(frame_time(frame))
    return Decoded(reader.decoded, len(kept), tuple(kept))


def decode_all(path: Path, times: list[float], *, convert_all: bool) -> Decoded:
    decoded, kept, pending = 0, [], list(times)
    with av.open(str(path)) as container:
        previous = None
        for frame in container.decode(video=0):
            decoded += 1
            if convert_all:
                frame.to_ndarray(format="rgb24")
            while pending and frame_time(frame) > pending[0] + 1e-6 and previous is not None:
                if not convert_all:
                    previous.to_ndarray(format="rgb24")
                kept.append(frame_time(previous))
                pending.pop(0)
            previous = frame
    return Decoded(decoded, decoded if convert_all else len(kept), tuple(kept))


def decode_sound(path: Path) -> int:
    """Samples of 16 kHz mono float the sound track resamples to."""
    samples = 0
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        for frame in container.decode(audio=0):
            samples += sum(out.samples for out in resampler.resample(frame))
        samples += sum(out.samples for out in resampler.resample(None))
    return samples


WAYS: dict[str, Callable[[Path, list[float]], object]] = {
    "seek": lambda path, times: decode_at(path, times, near=False),
    "seek_near": lambda path, times: decode_at(path, times, near=True),
    "all_frames": lambda path, times: decode_all(path, times, convert_all=True),
    "all_decoded": lambda path, times: decode_all(path, times, convert_all=False),
    "audio": lambda path, times: decode_sound(path),
}


def duration_of(path: Path) -> float:
    with av.open(str(path)) as container:
        return container.duration / av.time_base


def measure(path: Path, ways: list[str], repeats: int = 1) -> dict:
    """{way: {cpu_s, wall_s (the best of `repeats`), frames decoded / converted}} for one clip."""
    times, result = targets(duration_of(path)), {}
    for way in ways:
        best = None
        for _ in range(repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            value = WAYS[way](path, times)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if best is None or cpu < best[0]:
                best = (cpu, wall, value)
        cpu, wall, value = best
        row = {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3)}
        if isinstance(value, Decoded):
            row |= {"frames_decoded": value.decoded, "frames_converted": value.converted}
        else:
            row |= {"samples_16k": value}
        result[way] = row
    return {"targets": len(times), **result}
