"""Retrieval and classification figures from the server's answers (docs/benchmarks.md, "Search"): similarity per
encoding, recall@1 of the item and of its label per modality pair (training/evaluate.py's retrieval, on the
embeddings a search user gets), zero-shot vs classifier accuracy. numpy only.

Ties: hamming similarity of 64 bits takes 65 values, so many galleries tie at the top. A tie is counted as a
random pick among the tied items (the expected recall), where training/metrics.py's recall_at counts a tie with the
true match as a hit; the two agree wherever there are no ties (float, tested).
"""

from __future__ import annotations

import numpy as np

from service.embedding_types import dequantize, hamming_similarity
from service.joint_space import QuantizationRanges
from service.zero_shot import normalise

# how each encoding is compared: float cosine; int8 dequantized by the manifest's ranges, then cosine; int8_codes the
# integer dot product of the codes as a vector store would take them; binary the hamming similarity of the bits
SIMILARITIES = ("float", "int8", "int8_codes", "binary")


def similarity(query: np.ndarray, gallery: np.ndarray, kind: str, ranges: QuantizationRanges | None = None):
    """[N,·] query codes vs [M,·] gallery codes of one encoding → [N,M] (the higher the closer)."""
    if kind == "float":
        return np.asarray(query, np.float32) @ np.asarray(gallery, np.float32).T
    if kind == "int8":
        return normalise(dequantize(query, "int8", ranges)) @ normalise(dequantize(gallery, "int8", ranges)).T
    if kind == "int8_codes":
        return np.asarray(query, np.int32) @ np.asarray(gallery, np.int32).T
    if kind == "binary":  # the wire's binary is the packed bits - 128
        return hamming_similarity(to_ubinary(query), to_ubinary(gallery))
    raise ValueError(f"unknown similarity {kind!r}")


def to_ubinary(codes: np.ndarray) -> np.ndarray:
    return (np.asarray(codes).astype(np.int16) + 128).astype(np.uint8)


def recall_at_1(sim: np.ndarray) -> float:
    """Queries (rows) whose most similar column is their own (same index); ties shared out evenly."""
    top = sim.max(axis=1, keepdims=True)
    tied = (sim == top).sum(axis=1)
    hit = np.diag(sim) == top[:, 0]
    return float(np.mean(np.where(hit, 1.0 / tied, 0.0)))


def label_recall_at_1(sim: np.ndarray, labels: np.ndarray) -> float:
    """Queries whose most similar column has the query's label; among tied columns, the share that has it."""
    at_top = sim == sim.max(axis=1, keepdims=True)  # [N,M]
    same = labels[None, :] == labels[:, None]
    return float(np.mean((at_top & same).sum(axis=1) / at_top.sum(axis=1)))


def pair_retrieval(codes: dict[str, dict[int, np.ndarray]], labels: np.ndarray, kind: str, ranges=None) -> dict:
    """codes: modality → {row index: that row's code}. For each ordered pair a→b, among the rows having both:
    {"n", "recall@1", "label_recall@1"} of a's codes as queries against b's as the gallery."""
    out = {}
    for a, of_a in codes.items():
        for b, of_b in codes.items():
            both = sorted(set(of_a) & set(of_b))
            if a == b or len(both) < 2:
                continue
            sim = similarity(np.stack([of_a[i] for i in both]), np.stack([of_b[i] for i in both]), kind, ranges)
            out[f"{a}->{b}"] = {"n": len(both), "recall@1": recall_at_1(sim),
                                "label_recall@1": label_recall_at_1(sim, labels[both])}  # fmt: skip
    return out


def mean_over_pairs(pairs: dict, key: str) -> float | None:
    values = [p[key] for p in pairs.values()]
    return float(np.mean(values)) if values else None


def accuracy(predicted, truth) -> float | None:
    return float(np.mean(np.asarray(predicted) == np.asarray(truth))) if len(truth) else None


def label_probabilities(answer_labels: list[dict], labels: list[str]) -> np.ndarray:
    """A zero-shot result's labels (best first, {"label", "score"}) → [L] in the bundle's label order."""
    where = {name: i for i, name in enumerate(labels)}
    probs = np.zeros(len(labels), np.float64)
    for entry in answer_labels:
        probs[where[entry["label"]]] = entry["score"]
    return probs
