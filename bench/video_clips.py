"""The video bench's clips: H.264 + AAC MP4s written once with PyAV into a cache directory (never committed).

"motion" is the natural-footage stand-in: a camera panning over a textured scene (smooth multi-octave value noise
with colour fields, the kind of low-frequency detail real footage has, which is what makes H.264 predict well), three
shapes moving across it and a slow change of light. "noise" is the worst case: every pixel fresh every frame, nothing
to predict. Frames are built straight in YUV 4:2:0 planes (a panned crop of a precomputed world), so writing a 60 s
1080p clip costs the encoder's time, not numpy's. 30 frames/s, a keyframe every 2 s (GOP 60, no scene-cut
keyframes, so seeking lands where a server in production would), AAC stereo at 48 kHz (a tone sweep with some hiss).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

HEIGHTS = {"360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080)}
FPS = 30
GOP_FRAMES = 60  # a keyframe every 2 s
AUDIO_RATE = 48_000
PAN_SHARE = 0.25  # the world is this much wider and taller than the frame: the camera's range
# Sensor noise: without it the pan is an exact whole-pixel shift and x264 codes 1080p in under 1 Mbit/s, a fifth of
# what camera footage takes; a pool of fresh-looking grain frames (x264 refers back one or a few frames, never 13)
# keeps writing a clip cheap
GRAIN_SIGMA = 2.5
GRAIN_FRAMES = 13


@dataclass(frozen=True)
class ClipSpec:
    resolution: str  # a key of HEIGHTS
    content: str  # "motion" | "noise"
    seconds: float = 60.0
    preset: str = "veryfast"  # x264's speed/size trade-off; the stream's tools (CABAC, B-frames) stay the default
    crf: int = 21

    @property
    def size(self) -> tuple[int, int]:
        return HEIGHTS[self.resolution]

    @property
    def name(self) -> str:
        return f"{self.content}-{self.resolution}-{self.seconds:g}s-{self.preset}-crf{self.crf}.mp4"

    def describe(self) -> dict:
        width, height = self.size
        codecs = {"vcodec": "libx264 (H.264, yuv420p)", "acodec": f"aac, stereo, {AUDIO_RATE} Hz"}
        return asdict(self) | {"width": width, "height": height, "fps": FPS, "gop_frames": GOP_FRAMES} | codecs


def smooth_field(rng: np.random.Generator, width: int, height: int, octaves: int = 5) -> np.ndarray:
    """[H,W] float32 in [0,1]: value noise summed over octaves (each twice as fine and half as strong)."""
    field = np.zeros((height, width), np.float32)
    for octave in range(octaves):
        cells = 4 * 2**octave
        small = rng.random((cells, max(2, cells * width // height))).astype(np.float32)
        up = Image.fromarray(small, mode="F").resize((width, height), Image.Resampling.BICUBIC)
        field += np.asarray(up) / 2**octave
    field -= field.min()
    return field / max(float(field.max()), 1e-6)


@dataclass
class World:
    """The scene's planes, bigger than the frame by PAN_SHARE: y [Hw,Ww], u and v [Hw/2,Ww/2], uint8."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    grain: np.ndarray  # [GRAIN_FRAMES,H,W] int16: a camera's sensor noise, one of these added to each frame

    @classmethod
    def build(cls, width: int, height: int, seed: int = 0) -> World:
        rng = np.random.default_rng(seed)
        ww, wh = 2 * round(width * (1 + PAN_SHARE) / 2), 2 * round(height * (1 + PAN_SHARE) / 2)
        ramp = np.linspace(0.0, 1.0, ww, dtype=np.float32)[None, :]  # a gradient across the scene, like the sky's
        luma = 0.7 * smooth_field(rng, ww, wh, octaves=7) + 0.3 * ramp
        u = 128 + 60 * (smooth_field(rng, ww // 2, wh // 2, octaves=3) - 0.5)
        v = 128 + 60 * (smooth_field(rng, ww // 2, wh // 2, octaves=3) - 0.5)
        grain = np.rint(GRAIN_SIGMA * rng.standard_normal((GRAIN_FRAMES, height, width), np.float32)).astype(np.int16)
        return cls(np.uint8(16 + 219 * luma), np.uint8(u), np.uint8(v), grain)


def pan_offset(t: float, world: World, width: int, height: int) -> tuple[int, int]:
    """The camera's top-left corner at t seconds (even, for 4:2:0): a slow figure-of-eight over the world."""
    range_x, range_y = world.y.shape[1] - width, world.y.shape[0] - height
    x = range_x * (0.5 - 0.5 * math.cos(2 * math.pi * t / 23.0))
    y = range_y * (0.5 - 0.5 * math.cos(2 * math.pi * t / 17.0))
    return 2 * int(x / 2), 2 * int(y / 2)


def motion_frame(index: int, world: World, width: int, height: int) -> np.ndarray:
    """[H*3/2, W] uint8, yuv420p: the panned crop, three moving boxes, the light rising and falling."""
    t = index / FPS
    x, y = pan_offset(t, world, width, height)
    luma = world.y[y : y + height, x : x + width].astype(np.int16)
    u = world.u[y // 2 : (y + height) // 2, x // 2 : (x + width) // 2].copy()
    v = world.v[y // 2 : (y + height) // 2, x // 2 : (x + width) // 2].copy()
    luma += world.grain[index % GRAIN_FRAMES] + int(20 * math.sin(2 * math.pi * t / 11.0))
    box = 2 * (height // 12)
    for k in range(3):
        bx = 2 * int((width - box) * (0.5 + 0.45 * math.sin(t * (0.7 + 0.3 * k) + k)) / 2)
        by = 2 * int((height - box) * (0.5 + 0.45 * math.cos(t * (0.5 + 0.2 * k) + 2 * k)) / 2)
        luma[by : by + box, bx : bx + box] = 60 + 70 * k
        u[by // 2 : (by + box) // 2, bx // 2 : (bx + box) // 2] = 90 + 40 * k
        v[by // 2 : (by + box) // 2, bx // 2 : (bx + box) // 2] = 200 - 50 * k
    return planes(np.clip(luma, 0, 255).astype(np.uint8), u, v)


def noise_frame(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """[H*3/2, W] uint8, yuv420p: every sample uniform and fresh."""
    return rng.integers(0, 256, (height * 3 // 2, width), dtype=np.uint8)


def planes(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Y [H,W], U and V [H/2,W/2] → the [H*3/2, W] layout av.VideoFrame.from_ndarray takes for yuv420p."""
    height, width = y.shape
    return np.concatenate([y, u.reshape(height // 4, width), v.reshape(height // 4, width)])


def sound(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """[2, N] float32: a tone sweeping 200–2000 Hz and back every 10 s, a little hiss, the channels apart."""
    t = np.arange(int(seconds * AUDIO_RATE), dtype=np.float64) / AUDIO_RATE
    hz = 200 + 1800 * (0.5 - 0.5 * np.cos(2 * np.pi * t / 10.0))
    tone = 0.3 * np.sin(2 * np.pi * np.cumsum(hz) / AUDIO_RATE)
    hiss = 0.02 * rng.standard_normal((2, t.size))
    return (np.stack([tone, 0.8 * tone]) + hiss).astype(np.float32)


def write_clip(spec: ClipSpec, path: Path, seed: int = 0) -> Path:
    width, height = spec.size
    rng = np.random.default_rng(seed)
    world = World.build(width, height, seed) if spec.content == "motion" else None
    partial = path.with_suffix(".partial.mp4")  # a run killed while writing leaves no clip that looks finished
    with av.open(str(partial), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": spec.preset, "crf": str(spec.crf), "g": str(GOP_FRAMES),
                         "keyint_min": str(GOP_FRAMES), "sc_threshold": "0"}  # fmt: skip
        audio = container.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
        samples, written = sound(spec.seconds, rng), 0
        for index in range(round(spec.seconds * FPS)):
            t = index / FPS
            pixels = motion_frame(index, world, width, height) if world else noise_frame(rng, width, height)
            frame = av.VideoFrame.from_ndarray(pixels, format="yuv420p")
            frame.pts = index
            container.mux(video.encode(frame))
            # the sound up to this frame's time, so the file interleaves as a camera's does
            written = write_sound(container, audio, samples, written, round((t + 1 / FPS) * AUDIO_RATE))
        container.mux(video.encode())
        write_sound(container, audio, samples, written, samples.shape[1])
        container.mux(audio.encode())
    partial.rename(path)
    return path


def write_sound(container, stream, samples: np.ndarray, start: int, end: int, chunk: int = 1024) -> int:
    """Encodes samples[:, start:end] in whole chunks (the last partial chunk waits, unless end is the end);
    returns where it stopped."""
    while start + chunk <= end or (start < end == samples.shape[1]):
        piece = np.ascontiguousarray(samples[:, start : min(start + chunk, end)])
        frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = AUDIO_RATE, start
        container.mux(stream.encode(frame))
        start += piece.shape[1]
    return start


def clip(spec: ClipSpec, cache: Path) -> Path:
    """The clip's path in `cache`, written first if it is not there yet."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / spec.name
    return path if path.exists() else write_clip(spec, path)
