"""A zero-shot answer from the items' results and the labels' embeddings (docs/zero-shot.md, "Semantics"): the
maths is service/zero_shot.py's, the one export's fit uses; the evidence rows are classify's explain
(api/segments.py), so a caller reads both answers alike.

- the item's scores: its fused embedding against the labels ensembled over the templates of its present
  modalities (one per modality: an image + text item under an image and a text template weighs both alike);
- each present slot's evidence: the slot's embedding against the labels under its own modality's template (a
  video's frames and sound track: "video"'s);
- a video item: the clip's answer, and each segment's, from the segment's fused and slot embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from service.frontend.api.segments import evidence, ranking, top_labels
from service.items import ItemResult, SegmentResults
from service.manifest import VIDEO_SLOTS
from service.zero_shot import SLOT_MODALITY, ensemble, probabilities

LabelRows = Mapping[str, np.ndarray]  # template → the labels' text embeddings [L,D], unit norm


class Scorer:
    """One request's labels, templates and temperature, applied to each of its items."""

    def __init__(self, labels: list[str], templates: dict[str, str], rows: LabelRows, temperature: float):
        self.labels, self.templates, self.rows, self.temperature = labels, templates, rows, temperature

    def item(self, result: ItemResult) -> dict:
        against = ensemble([self.rows[self.templates[m]] for m in result.modalities])
        scores = self._scores(result.fused, against)
        row = {"modalities": result.modalities} | self._answer(scores, self._by_slot(result.embeddings))
        if result.segments is not None:
            row["segments"] = self.segments(result, against)
        return row

    def segments(self, result: ItemResult, against: np.ndarray) -> list[dict]:
        """Each segment's answer in time order: its fused embedding against the item's labels, and its slots'
        evidence (its own video slots, and the item's other inputs, as classify's segments do)."""
        segments: SegmentResults = result.segments
        others = {slot: e for slot, e in result.embeddings.items() if slot not in VIDEO_SLOTS}
        fused = self._scores(segments.fused, against)  # [G,L]
        out = []
        for row in range(len(segments)):
            own = {slot: segments.embeddings[slot][row] for slot in segments.slots(row)}
            start, end = segments.bounds[row]
            entry = {"start_s": round(float(start), 6), "end_s": round(float(end), 6),
                     "modalities": segments.slots(row)}  # fmt: skip
            out.append(entry | self._answer(fused[row], self._by_slot(others | own)))
        return out

    def _answer(self, scores: np.ndarray, by_slot: dict[str, np.ndarray]) -> dict:
        return {"labels": top_labels(scores, self.labels, len(self.labels))} | evidence(
            by_slot, self.labels, int(ranking(scores)[0])
        )

    def _by_slot(self, embeddings: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {slot: self._scores(e, self.rows[self.templates[SLOT_MODALITY[slot]]]) for slot, e in embeddings.items()}

    def _scores(self, vectors: np.ndarray, against: np.ndarray) -> np.ndarray:
        """[D] → [L]; [N,D] → [N,L]."""
        vectors = np.asarray(vectors)
        scores = probabilities(np.atleast_2d(vectors), against, self.temperature)
        return scores[0] if vectors.ndim == 1 else scores
