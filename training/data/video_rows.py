"""Video examples → training rows: ONE ROW PER SEGMENT, as the server answers one fusion row per segment.

A video row's video_frames are the segment's frame features [K,F_image] (zero rows = padding) and its
video_audio the segment's sound features [F_audio]; its other modalities (an image, text or audio given beside
the clip) repeat in each of its rows. A row's label is the annotated segment (Example.segments) overlapping it
most, else the item's label. An example without video is one row, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.dataset import Example
from training.data.video_features import ClipFeatures


def segment_label(example: Example, start: float, end: float) -> str:
    """The label of the annotation overlapping [start, end] most; the item's label when none overlaps."""
    best, label = 0.0, example.label
    for a, b, annotated in example.segments:
        overlap = min(b, end) - max(a, start)
        if overlap > best:
            best, label = overlap, annotated
    return label


@dataclass(frozen=True)
class Rows:
    item: np.ndarray  # [N] i64: the example each row comes from
    segment: np.ndarray  # [N] i64: the row's segment in its clip, -1 for an example without video
    bounds: np.ndarray  # [N,2] f32: the segment's (start_s, end_s), NaN without video
    labels: list[str]  # [N] each row's label


def plan_rows(examples: list[Example], clips: list[ClipFeatures]) -> Rows:
    """clips: one per example having a video, in order (VideoFeatures.of)."""
    rows: list[tuple[int, int, float, float, str]] = []  # (item, segment, start_s, end_s, label)
    clip_of = iter(clips)
    for index, example in enumerate(examples):
        if example.video is None:
            rows.append((index, -1, np.nan, np.nan, example.label))
            continue
        for g, (start, end) in enumerate(next(clip_of).bounds.tolist()):
            rows.append((index, g, start, end, segment_label(example, start, end)))
    item, segment, start, end, labels = zip(*rows, strict=True) if rows else ((), (), (), (), ())
    bounds = np.stack([np.array(start, np.float32), np.array(end, np.float32)], axis=1).reshape(-1, 2)
    return Rows(np.array(item, np.int64), np.array(segment, np.int64), bounds, list(labels))


def video_tables(rows: Rows, clips: list[ClipFeatures], dims: dict[str, int], k: int) -> dict[str, np.ndarray]:
    """{video_frames: [N,K,F_image], video_audio: [N,F_audio]}: zeros on rows without video."""
    frames = np.zeros((len(rows.item), k, dims["image"]), np.float32)
    sound = np.zeros((len(rows.item), dims["audio"]), np.float32)
    clip_index = np.cumsum(rows.segment == 0) - 1  # the clip a video row belongs to (its first segment counts)
    for r in np.flatnonzero(rows.segment >= 0):
        clip = clips[clip_index[r]]
        frames[r], sound[r] = clip.frames[rows.segment[r]], clip.sound[rows.segment[r]]
    return {"video_frames": frames, "video_audio": sound}


def expand_views(examples: list[Example], modality: str, views: np.ndarray, item: np.ndarray) -> np.ndarray:
    """Views in view_examples order (per example) → the same per row (a row repeats its example's views)."""
    counts = np.array([len(e.views.get(modality, ())) for e in examples], np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    picks = [np.arange(starts[i], starts[i] + counts[i]) for i in item]
    return views[np.concatenate(picks) if picks else np.zeros(0, np.int64)]
