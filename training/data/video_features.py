"""A video example's backbone features per segment, cached like every other modality's.

Each clip is decoded by the server's decode_video (training/data/video_decode.py); its kept frames go through
the IMAGE backbone and each segment's sound through the AUDIO backbone, as the served bundle runs them through
image_encoder.onnx and audio_encoder.onnx. Cached per clip under an encoder id naming the backbone (its class,
weights and preprocessing digests, features.encoder_id) and the segmentation and sampling (video_decode.
inputs_digest): frames [G,K,F_image] (K = max_frames_per_segment; zero rows = no frame there), sound
[G,F_audio] (zero rows = no sound in that segment), bounds [G,2].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from service.items import VideoArrays
from service.preprocess import FusionError
from training.data.dataset import Example
from training.data.features import FeatureCache, collate, encoder_id, file_key
from training.data.onnx_runner import FeatureRunner
from training.data.specs import PreprocessSpecs
from training.data.video_decode import decode_clip, inputs_digest, video_inputs

_BATCH = 32


@dataclass(frozen=True)
class ClipFeatures:
    frames: np.ndarray  # [G,K,F_image] f32, zero rows where a segment has fewer than K frames (or none)
    sound: np.ndarray  # [G,F_audio] f32, zero rows where a segment has no sound
    bounds: np.ndarray  # [G,2] f32 (start_s, end_s)

    @property
    def has_frames(self) -> np.ndarray:
        return np.abs(self.frames).max(axis=(1, 2), initial=0.0) > 0  # [G] bool

    @property
    def has_sound(self) -> np.ndarray:
        return np.abs(self.sound).max(axis=1, initial=0.0) > 0  # [G] bool


def _frames(video: VideoArrays, run, k: int, width: int) -> np.ndarray:
    """Kept frames → image features, laid out per segment [G,K,F]."""
    out = np.zeros((video.segments, k, width), np.float32)
    if not len(video.frames):
        return out
    pixels = torch.from_numpy(np.ascontiguousarray(video.frames, dtype=np.float32))  # [N,3,S,S]
    features = torch.cat([run(pixels[b : b + _BATCH]) for b in range(0, len(pixels), _BATCH)]).float().numpy()
    slot = np.zeros(video.segments, np.int64)  # next free frame slot per segment
    for row, segment in zip(features, video.frame_segment.tolist(), strict=True):
        out[segment, slot[segment]] = row
        slot[segment] += 1
    return out


def _sound(video: VideoArrays, run, width: int) -> np.ndarray:
    """Each segment's sound (its real length, as the server sends it) → audio features [G,F]."""
    out = np.zeros((video.segments, width), np.float32)
    rows = [g for g, n in enumerate(video.audio_length.tolist()) if n > 0]
    for b in range(0, len(rows), _BATCH):
        chunk = rows[b : b + _BATCH]
        inputs = collate("audio", [(video.audio[g, :, : video.audio_length[g]],) for g in chunk])
        out[chunk] = run(*inputs).float().numpy()
    return out


class VideoFeatures:
    """Features of video examples with one image and one audio backbone, read from / written to the cache."""

    def __init__(
        self, backbones: dict, cache: FeatureCache | None, specs: PreprocessSpecs, video, progress: bool, device=None
    ):
        self.inputs = video_inputs(video, specs.image, specs.audio)
        digest = inputs_digest(self.inputs)[:12]
        self.ids = {m: f"video-{digest}-{encoder_id(b, m, specs)}" for m, b in backbones.items()}
        self.ids["bounds"] = f"video-{digest}-bounds"
        self.backbones, self.cache, self.progress, self.k = backbones, cache, progress, video.max_frames_per_segment
        onnx = {m: cache.root / self.ids[m] / "backbone.onnx" if cache else None for m in backbones}
        self.runs = {m: FeatureRunner(b, m, onnx[m], device=device) for m, b in backbones.items()}

    def _width(self, modality: str) -> int:
        return int(getattr(self.backbones[modality], "backbone", self.backbones[modality]).out_dim)

    def _compute(self, example: Example) -> ClipFeatures:
        try:
            video = decode_clip(example.video.read_bytes(), self.inputs)
        except FusionError as exc:
            raise ValueError(f"item {example.id}: video: {exc.message}") from exc
        frames = _frames(video, self.runs["image"], self.k, self._width("image"))
        sound = _sound(video, self.runs["audio"], self._width("audio"))
        return ClipFeatures(frames, sound, np.asarray(video.bounds, np.float32))

    def _cached(self, key: str) -> ClipFeatures | None:
        if self.cache is None:
            return None
        parts = [self.cache.get(self.ids[m], key) for m in ("image", "audio", "bounds")]
        return None if any(p is None for p in parts) else ClipFeatures(*parts)

    def of(self, examples: Sequence[Example]) -> list[ClipFeatures]:
        """ClipFeatures of each example having a video, in order (each distinct clip decoded once)."""
        present = [e for e in examples if e.video is not None]
        found: dict[str, ClipFeatures] = {}
        for backbone in self.backbones.values():
            backbone.eval()  # frozen: their features are cached
        with torch.no_grad(), tqdm(total=len(present), desc="features: video", disable=not self.progress) as bar:
            for example in present:
                key = file_key(example.video)
                if key not in found:
                    found[key] = self._cached(key) or self._store(key, self._compute(example))
                bar.update(1)
        if self.cache is not None:
            self.cache.flush()
        return [found[file_key(e.video)] for e in present]

    def _store(self, key: str, clip: ClipFeatures) -> ClipFeatures:
        if self.cache is not None:
            for m, value in (("image", clip.frames), ("audio", clip.sound), ("bounds", clip.bounds)):
                self.cache.put(self.ids[m], key, value)
        return clip
