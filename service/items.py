"""The protocol-neutral types every process shares: what a request item is before and after preprocessing, and
what the engine answers for it. Plain data, no onnxruntime and no inference import, so the protocols and the
wire (service/wire/frames.py) use them without pulling the engine in (docs/architecture.md "Import rules")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from service import manifest


@dataclass(init=False)
class RawItem:
    """One request item as it arrived: its parts by modality name (bytes of a file, or text), with where its
    fields are in the request. `RawItem(image=..., text=...)` sets parts; `item.image` reads one (None when
    absent) and `item.image = ...` sets it, for every name in service.manifest.MODALITIES."""

    parts: dict[str, bytes | str]
    prefix: str  # "inputs[3]." for JSON items, so errors name the exact field
    suffix: str  # "[3]" for KServe V2 rows, whose fields are tensor elements: "image[3]"
    # request options a modality's decoding reads (video: segment_s, overlap_s), as the request gave them;
    # errors name an option as options_prefix + its name ("segment_s" for a v1 query, "parameters.segment_s" in V2)
    options: dict[str, Any]
    options_prefix: str

    def __init__(
        self, *, prefix: str = "", suffix: str = "", options: dict[str, Any] | None = None, options_prefix: str = "",
        **parts: bytes | str | None,
    ):  # fmt: skip
        unknown = [name for name in parts if name not in manifest.MODALITIES]
        if unknown:
            raise TypeError(f"RawItem got unknown modalities {unknown}; known: {', '.join(manifest.MODALITIES)}")
        self.parts = {name: value for name, value in parts.items() if value is not None}
        self.prefix, self.suffix = prefix, suffix
        self.options, self.options_prefix = dict(options or {}), options_prefix

    def __getattr__(self, name: str):  # only for names that are no attribute: the modalities
        if name in manifest.MODALITIES:
            return self.__dict__.get("parts", {}).get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in manifest.MODALITIES:
            self.set(name, value)
        else:
            super().__setattr__(name, value)

    def get(self, modality: str) -> bytes | str | None:
        return self.parts.get(modality)

    def set(self, modality: str, value: bytes | str | None) -> None:
        if value is None:
            self.parts.pop(modality, None)
        else:
            self.parts[modality] = value

    def modalities(self) -> list[str]:
        return [m for m in manifest.MODALITIES if m in self.parts]

    def field(self, modality: str) -> str:
        return f"{self.prefix}{modality}{self.suffix}"


class VideoArrays(NamedTuple):
    """A decoded video (service/preprocess/video.py): its kept frames, preprocessed as the image encoder's
    spec says, and its sound track per segment, as the audio encoder's spec says. A tuple, so the wire carries
    it as five arrays (service/wire/frames.py); rebuild with VideoArrays(*parts)."""

    frames: np.ndarray  # [N,3,S,S] f32 (u8 when the image graph normalises); N = 0: no picture (or no image encoder)
    frame_segment: np.ndarray  # [N] i32: the segment each frame belongs to, non-decreasing
    bounds: np.ndarray  # [G,2] f32: each segment's (start_s, end_s), G ≥ 1
    audio: np.ndarray  # [G,C,T] f32: each segment's audio-encoder input, zero-padded on T (C = n_mels, or 1)
    audio_length: np.ndarray  # [G] i32: each segment's real T; 0 = no sound there (or no audio encoder)

    @property
    def segments(self) -> int:
        return int(self.bounds.shape[0])


@dataclass
class PreparedItem:
    # image [3,S,S] f32 · text (ids [L], mask [L]) i64 · audio mel [n_mels,T] f32 · video VideoArrays
    arrays: dict[str, Any]
    decode_s: float = 0.0
    # what decoding measured, for metrics and Server-Timing (video: decode seconds per stage, frames decoded
    # and kept, seconds of video); the front-end's own record, not sent to the engine
    stats: dict[str, float] = field(default_factory=dict)
    modalities: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.modalities = [m for m in manifest.MODALITIES if m in self.arrays]


@dataclass(frozen=True)
class BatchInfo:
    size: int  # items in the batch this item ran in
    queue_s: float  # time from submit to batch start
    infer_s: float  # run_batch wall time, less what it spent on another component's compute


@dataclass
class SegmentResults:
    """A video item's answer per segment, stacked (G segments); the item's own answer is the whole clip's."""

    bounds: np.ndarray  # [G,2] f32 (start_s, end_s)
    probabilities: np.ndarray  # [G,C]
    fused: np.ndarray  # [G,D]
    present: np.ndarray  # [G,2] bool: (video_frames, video_audio) present in each segment
    embeddings: dict[str, np.ndarray]  # video slot → [G,D] (zero rows where absent)
    modality_probabilities: dict[str, np.ndarray] = field(default_factory=dict)  # video slot → [G,C]

    def __len__(self) -> int:
        return int(self.bounds.shape[0])

    def slots(self, row: int) -> list[str]:
        """The video slots present in segment `row`."""
        return [slot for slot, has in zip(manifest.VIDEO_SLOTS, self.present[row], strict=True) if has]


@dataclass
class ItemResult:
    modalities: list[str]  # the item's input modalities (a video is "video")
    probabilities: np.ndarray  # [C]
    fused: np.ndarray  # [D]
    embeddings: dict[str, np.ndarray]  # slot → [D] (a video's video_frames / video_audio: the clip's)
    modality_probabilities: dict[str, np.ndarray] = field(default_factory=dict)  # present slot → [C]
    batches: dict[str, BatchInfo] = field(default_factory=dict)  # component → the batch it ran in
    segments: SegmentResults | None = None  # a video item's per-segment answers

    @property
    def queue_s(self) -> float:  # critical path: slowest encoder, then fusion
        return self._path("queue_s")

    @property
    def infer_s(self) -> float:
        return self._path("infer_s")

    def _path(self, attr: str) -> float:
        encoders = [getattr(info, attr) for name, info in self.batches.items() if name != "fusion"]
        fusion = self.batches.get("fusion")
        return max(encoders, default=0.0) + (getattr(fusion, attr) if fusion else 0.0)
