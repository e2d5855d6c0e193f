"""Tridigits video clips: handwritten digits moving on screen while a voice speaks them (MP4, H.264 + AAC).

A clip is a sequence of shots, one digit each, `shot_s` seconds apiece (the bundle's segment length, so a
two-digit clip is two segments). A shot's frames are the image jobs' rendering (demo_media.render_digit) of a
load_digits digit on a wider sheet of paper, so it can drift and shake without leaving the frame; its blur,
contrast and grey patches stay for the whole shot, its noise is drawn afresh for every frame, and a cover may
hide it for part of the shot. Its sound is the spoken word at a random onset inside the shot, in noise at the
shot's SNR (demo_media.noisy_speech). A clip without picture is an MP4 with no video stream, one without
sound has no audio stream.

Runs in worker processes, pure given its arguments and seeded generator: x264 runs single-threaded, so the
same job writes the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np

from training.data.demo_media import SAMPLE_RATE, AudioJob, ImageJob, noisy_speech, render_digit

# load_digits' 8x8 digit is drawn at 2/3 of the frame: a 2-pixel blank border each side of the 8x8 grid
SHEET_BORDER = 2
MAX_SHIFT = SHEET_BORDER / (8 + 2 * SHEET_BORDER)  # a drift stays within the border: the digit is never cut
X264 = {"preset": "fast", "crf": "26", "threads": "1"}  # one thread: deterministic bytes, no oversubscription


def sheet(pixels: np.ndarray) -> np.ndarray:
    """An 8x8 load_digits grid on a blank border (12x12): the rendered digit takes 2/3 of the frame."""
    return np.pad(pixels, SHEET_BORDER)


@dataclass(frozen=True)
class Shot:
    """One digit's time on screen. `image` None: the clip has no picture; `speech` None: no sound."""

    image: ImageJob | None  # the base rendering (pixels on their sheet); its shift is where the drift starts
    drift: tuple[float, float]  # movement per second, fraction of the side
    shake: float  # per-frame jitter std, fraction of the side
    cover: tuple[float, float, float, float, float, float] | None  # (t0, t1 in s, x, y, side, grey) hides the digit
    speech: AudioJob | None  # lead_s = the word's onset inside the shot


@dataclass(frozen=True)
class VideoJob:
    shots: tuple[Shot, ...]
    shot_s: float  # seconds per shot = the segment length the clip is annotated with
    fps: int
    size: int  # frame side, pixels (even: H.264's 4:2:0 chroma)

    @property
    def picture(self) -> bool:
        return self.shots[0].image is not None

    @property
    def sound(self) -> bool:
        return self.shots[0].speech is not None


def shot_frame(shot: Shot, t: float, rng: np.random.Generator) -> np.ndarray:
    """The shot's frame at t seconds into it: [S,S] uint8 greyscale."""
    base = shot.image
    jitter = rng.normal(0.0, shot.shake, 2) if shot.shake > 0 else np.zeros(2)  # [2]
    x, y = np.clip(np.add(base.shift, np.multiply(shot.drift, t)) + jitter, -MAX_SHIFT, MAX_SHIFT)
    shift = (float(x), float(y))
    patches = base.patches
    if shot.cover is not None and shot.cover[0] <= t < shot.cover[1]:
        patches = patches + (shot.cover[2:4] + (shot.cover[4], shot.cover[4], shot.cover[5]),)
    return np.asarray(render_digit(replace(base, shift=shift, patches=patches), rng), dtype=np.uint8)


def frames(job: VideoJob, rng: np.random.Generator) -> list[np.ndarray]:
    """Every frame of the clip in order: [S,S] uint8 each, fps per second for shot_s per shot."""
    per_shot = round(job.shot_s * job.fps)
    return [shot_frame(shot, k / job.fps, rng) for shot in job.shots for k in range(per_shot)]


def sound_track(job: VideoJob, rng: np.random.Generator) -> np.ndarray:
    """The clip's sound, mono float32 at SAMPLE_RATE: each shot's word in its own noise, shot_s seconds each."""
    n = round(job.shot_s * SAMPLE_RATE)
    parts = []
    for shot in job.shots:
        clip = noisy_speech(replace(shot.speech, tail_s=job.shot_s), rng)[:n]  # the tail is cut at the shot's end
        parts.append(np.pad(clip, (0, n - clip.size)))
    return np.concatenate(parts).astype(np.float32)


def _encode_frames(container: av.container.OutputContainer, stream, job: VideoJob, rng: np.random.Generator) -> None:
    for index, pixels in enumerate(frames(job, rng)):
        frame = av.VideoFrame.from_ndarray(pixels, format="gray")  # PyAV converts to yuv420p for the encoder
        frame.pts = index
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def _encode_sound(container: av.container.OutputContainer, stream, job: VideoJob, rng: np.random.Generator) -> None:
    samples = sound_track(job, rng)  # [T]
    frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")  # [1,T]
    frame.sample_rate, frame.pts = SAMPLE_RATE, 0
    container.mux(stream.encode(frame))  # PyAV cuts it into the encoder's 1024-sample frames
    container.mux(stream.encode())


def write_clip(path: Path, job: VideoJob, rng: np.random.Generator) -> None:
    """The clip as an MP4 at `path`: H.264 frames (if job.picture), AAC sound (if job.sound)."""
    # the sound's own generator, drawn first: it does not depend on how many frames were drawn (and not
    # rng.spawn, which counts its children in the shared SeedSequence: a second write would differ)
    frame_rng, sound_rng = rng, np.random.default_rng(int(rng.integers(2**63)))
    with av.open(str(path), "w", format="mp4") as container:
        # every stream is added before the first packet: the muxer writes its header then
        video = container.add_stream("libx264", rate=job.fps, options=X264) if job.picture else None
        audio = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if job.sound else None
        if video is not None:
            video.width = video.height = job.size
            video.pix_fmt = "yuv420p"
            _encode_frames(container, video, job, frame_rng)
        if audio is not None:
            _encode_sound(container, audio, job, sound_rng)
