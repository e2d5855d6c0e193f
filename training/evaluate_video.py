"""Video evaluation: accuracy with a clip's frames alone, its sound alone and both, per segment and per clip.

Per segment: a video row (one segment) with only the subset's video slots present, its other modalities masked
off, like a request carrying only the clip. Per clip: what the server answers for the whole item — each video
slot the normalised mean of its segments' embeddings (over the segments having it), fused once — scored against
the item's label. Both on the test split (corrupted, like the training data) and, when the dataset has one,
the clean robustness set.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from training.data.splits import CLEAN, Split, TrainData
from training.metrics import classification_metrics, subset_name
from training.model.fused import FusedModel

VIDEO_SUBSETS = (("video_frames",), ("video_audio",), ("video_frames", "video_audio"))


@torch.no_grad()
def _embed(model: FusedModel, split: Split, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    features, _, _ = split.take(rows)
    return model.embed(features)  # slot → [R,D]


def _fuse(model: FusedModel, embeddings: dict[str, torch.Tensor], present: torch.Tensor) -> np.ndarray:
    logits, _ = model.fusion(embeddings, present)  # calibration divides by a positive scalar: argmax unchanged
    return logits.argmax(1).numpy()


def _segment_scores(model: FusedModel, split: Split, subset: tuple[str, ...]) -> dict:
    columns = [model.modalities.index(s) for s in subset]
    rows = torch.nonzero((split.present[:, columns] > 0.5).all(dim=1)).flatten()
    keep = torch.zeros(len(model.modalities))
    keep[columns] = 1.0
    predicted = _fuse(model, _embed(model, split, rows), split.present[rows] * keep) if len(rows) else np.zeros(0)
    return classification_metrics(predicted.astype(np.int64), split.labels[rows].numpy(), model.n_classes)


def _clip_scores(model: FusedModel, split: Split, examples: list, subset: tuple[str, ...], labels: list[str]) -> dict:
    """Each clip whose segments have every slot of `subset` somewhere, answered as the server answers it."""
    columns = [model.modalities.index(s) for s in subset]
    video_rows = torch.nonzero(split.segment >= 0).flatten()
    embeddings = _embed(model, split, video_rows)
    clips, targets, index = [], [], {label: i for i, label in enumerate(labels)}
    for item in torch.unique(split.item[video_rows]).tolist():
        mine = split.item[video_rows] == item  # [R] the clip's segments among the video rows
        present = split.present[video_rows][mine][:, columns] > 0.5  # [G,|subset|]
        if not present.any(dim=0).all():
            continue
        clip = {s: F.normalize(embeddings[s][mine][present[:, k]].mean(0), dim=-1) for k, s in enumerate(subset)}
        clips.append(clip)
        targets.append(index[examples[item].label])
    if not clips:
        return classification_metrics(np.zeros(0, np.int64), np.zeros(0, np.int64), model.n_classes)
    zeros = torch.zeros(len(clips), model.dim)
    stacked = {m: torch.stack([c[m] for c in clips]) if m in subset else zeros for m in model.modalities}
    present = torch.tensor([[float(m in subset) for m in model.modalities]] * len(clips))
    return classification_metrics(_fuse(model, stacked, present), np.array(targets), model.n_classes)


def video_metrics(model: FusedModel, data: TrainData, split: str = "test") -> dict | None:
    """{split name: {"segment": {subset: metrics}, "clip": {subset: metrics}}} for the test split and the clean
    set; None for a model without video."""
    if not {"video_frames", "video_audio"} & set(model.modalities):
        return None
    model.eval()
    out = {}
    for name in (split, CLEAN):
        part = data.splits.get(name)
        if part is None or part.segment is None or not bool((part.segment >= 0).any()):
            continue
        wanted = [s for s in VIDEO_SUBSETS if set(s) <= set(model.modalities)]
        examples = data.examples[name]
        out[name] = {
            "segment": {subset_name(s): _segment_scores(model, part, s) for s in wanted},
            "clip": {subset_name(s): _clip_scores(model, part, examples, s, data.labels) for s in wanted},
        }
    return out or None
