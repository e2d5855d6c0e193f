"""A video item's answers per segment (service/items.py SegmentResults) and the per-slot evidence, in v1's JSON;
shared by v1 classify / embed and OpenAI embeddings, so every JSON protocol writes segments alike.

Evidence names fusion's slots (service.manifest.SLOTS): a video's frames and sound track are `video_frames` and
`video_audio`, the clip's in the item's evidence and each segment's own in that segment's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from service.items import ItemResult, SegmentResults
from service.manifest import SLOTS, VIDEO_SLOTS


def ranking(probabilities: np.ndarray) -> np.ndarray:
    return probabilities.argsort()[::-1]  # label indices, best first


def top_labels(probabilities: np.ndarray, labels: list[str], top_k: int) -> list[dict]:
    return [{"label": labels[i], "score": float(probabilities[i])} for i in ranking(probabilities)[:top_k]]


def evidence(by_slot: Mapping[str, np.ndarray], labels: list[str], fused_top: int) -> dict:
    """Each present slot's own top label vs the fused one (explain=true), in SLOTS order."""
    rows = []
    for slot in (s for s in SLOTS if s in by_slot):
        top = int(ranking(by_slot[slot])[0])
        rows.append({"modality": slot, "label": labels[top], "score": float(by_slot[slot][top]),
                     "agrees": top == fused_top})  # fmt: skip
    return {"evidence": rows, "agreement": all(row["agrees"] for row in rows)}


def segment_slots(result: ItemResult, row: int) -> dict[str, np.ndarray]:
    """Segment `row`'s per-slot probabilities: its own video slots, and the item's other inputs (the same in every
    segment: fusion took them beside each segment's video)."""
    segments = result.segments
    others = {slot: p for slot, p in result.modality_probabilities.items() if slot not in VIDEO_SLOTS}
    own = {slot: segments.modality_probabilities[slot][row] for slot in segments.slots(row)
           if slot in segments.modality_probabilities}  # fmt: skip
    return others | own


def _bounds(segments: SegmentResults, row: int) -> dict:
    start, end = segments.bounds[row]
    return {"start_s": round(float(start), 6), "end_s": round(float(end), 6), "modalities": segments.slots(row)}


def classify_segments(result: ItemResult, labels: list[str], top_k: int, explain: bool) -> list[dict]:
    """[{start_s, end_s, modalities, labels, (evidence, agreement)}] per segment, in time order."""
    segments, out = result.segments, []
    for row in range(len(segments)):
        probabilities = segments.probabilities[row]  # [C]
        entry = _bounds(segments, row) | {"labels": top_labels(probabilities, labels, top_k)}
        if explain:
            entry |= evidence(segment_slots(result, row), labels, int(ranking(probabilities)[0]))
        out.append(entry)
    return out


def embed_segments(segments: SegmentResults, rows: Callable[[np.ndarray], list] = list) -> list[dict]:
    """[{start_s, end_s, modalities, fused, embeddings: {present video slot: [D]}}] per segment; `rows` writes a
    [G, D] matrix's embeddings (a request's dimensions and encodings: api/embedding_format.py)."""
    fused = rows(segments.fused)
    by_slot = {slot: rows(matrix) for slot, matrix in segments.embeddings.items()}
    out = []
    for row in range(len(segments)):
        embeddings = {slot: by_slot[slot][row] for slot in segments.slots(row)}
        out.append(_bounds(segments, row) | {"fused": fused[row], "embeddings": embeddings})
    return out
