"""Retrieval and classification figures from the server's answers (docs/benchmarks.md, "Search"): similarity per
encoding, recall@1 of the item and of its label per modality pair (training/evaluate.py's retrieval, on the
embeddings a search user gets), zero-shot vs classifier accuracy. numpy only.

Ties: hamming similarity of 64 bits takes 65 values, so many galleries tie at the top. A tie counts as a random
pick among the tied items, in expectation (training/metrics.py's recall1_ties, as the model card counts them).
"""

from __future__ import annotations

import numpy as np

from service.embedding_types import dequantize, hamming_similarity
from service.joint_space import QuantizationRanges
from training.metrics import label_recall1_ties, recall1_ties

# how each encoding is compared: float cosine; int8 the dot product of the codes dequantized by the manifest's ranges
# (as the model card's figures, training/evaluate_search.py); int8_codes the integer dot product of the codes, as a
# vector store's int8 index takes them; binary the hamming similarity of the bits
SIMILARITIES = ("float", "int8", "int8_codes", "binary")


def similarity(query: np.ndarray, gallery: np.ndarray, kind: str, ranges: QuantizationRanges | None = None):
    """[N,·] query codes vs [M,·] gallery codes of one encoding → [N,M] (the higher the closer)."""
    if kind == "float":
        return np.asarray(query, np.float32) @ np.asarray(gallery, np.float32).T
    if kind == "int8":
        return dequantize(query, "int8", ranges) @ dequantize(gallery, "int8", ranges).T
    if kind == "int8_codes":
        return np.asarray(query, np.int32) @ np.asarray(gallery, np.int32).T
    if kind == "binary":  # the wire's binary is the packed bits - 128
        return hamming_similarity(to_ubinary(query), to_ubinary(gallery))
    raise ValueError(f"unknown similarity {kind!r}")


def to_ubinary(codes: np.ndarray) -> np.ndarray:
    return (np.asarray(codes).astype(np.int16) + 128).astype(np.uint8)


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
            out[f"{a}->{b}"] = {"n": len(both), "recall@1": recall1_ties(sim),
                                "label_recall@1": label_recall1_ties(sim, labels[both])}  # fmt: skip
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
