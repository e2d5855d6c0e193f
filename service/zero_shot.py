"""Zero-shot scores in the joint space, computed one way by the server (POST /v1/models/{model}/zero-shot, rerank)
and by training/export.py when it fits the temperature (docs/zero-shot.md, "Semantics"): the candidate labels go
through the text encoder, put into a template ("a photo of {}"), and an item's probability of each label is the
softmax of cosine / temperature. numpy only.

A template per modality is prompt ensembling, as CLIP does it: the item's own answer uses the mean of the label
embeddings under the templates of the modalities it has (re-normalised); each present slot's evidence uses its
own modality's template (a video's frames and sound track use "video"'s).
"""

from __future__ import annotations

import numpy as np

from service.errors import InvalidInput
from service.manifest import MODALITIES

PLACEHOLDER = "{}"
DEFAULT_TEMPLATE = PLACEHOLDER
ECE_BINS = 15
SLOT_MODALITY = {"image": "image", "text": "text", "audio": "audio", "video_frames": "video", "video_audio": "video"}


def parse_template(template: str | dict | None, *, field: str = "template") -> dict[str, str]:
    """A request's `template` → one per modality. A string is every modality's; an object names modalities
    (the others get DEFAULT_TEMPLATE). Each must hold "{}"; a 422 naming the field otherwise."""
    if template is None:
        return dict.fromkeys(MODALITIES, DEFAULT_TEMPLATE)
    if isinstance(template, str):
        _check_one(template, field)
        return dict.fromkeys(MODALITIES, template)
    if not isinstance(template, dict):
        raise InvalidInput(f"{field} must be a string holding {{}} or an object of them by modality", field)
    unknown = [key for key in template if key not in MODALITIES]
    if unknown:
        raise InvalidInput(f"{field}.{unknown[0]} is not a modality ({', '.join(MODALITIES)})", f"{field}.{unknown[0]}")
    for key, value in template.items():
        _check_one(value, f"{field}.{key}")
    return {modality: template.get(modality, DEFAULT_TEMPLATE) for modality in MODALITIES}


def _check_one(template: object, field: str) -> None:
    if not isinstance(template, str) or PLACEHOLDER not in template:
        raise InvalidInput(f"{field} must be a string holding {PLACEHOLDER} (where each label goes)", field)


def label_text(template: str, label: str) -> str:
    """The text the encoder sees for `label` (every {} replaced; other braces are left as they are)."""
    return template.replace(PLACEHOLDER, label)


def normalise(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def ensemble(label_embeddings: list[np.ndarray]) -> np.ndarray:
    """Per template [L,D] → the labels' mean embedding over the templates, re-normalised [L,D]."""
    return normalise(np.mean(np.stack(label_embeddings), axis=0))


def probabilities(items: np.ndarray, labels: np.ndarray, temperature: float) -> np.ndarray:
    """items [N,D], labels [L,D], both unit norm → [N,L]: softmax over labels of cosine / temperature."""
    logits = np.asarray(items, np.float64) @ np.asarray(labels, np.float64).T / temperature  # [N,L]
    logits -= logits.max(axis=-1, keepdims=True)
    weights = np.exp(logits)
    return (weights / weights.sum(axis=-1, keepdims=True)).astype(np.float32)


def expected_calibration_error(probs: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    """probs [N,L], truth [N] label indices → ECE: the |accuracy − confidence| of the top label, averaged over
    equal-width confidence bins weighted by their share of the items (Guo et al., 2017)."""
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = (predicted == truth).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)
