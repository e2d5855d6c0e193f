"""Metric functions shared by evaluation, the model card and the int8 sweep: a leaf module (numpy only)."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from service import zero_shot


def subsets(modalities: list[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, singles first, in canonical modality order (7 for three modalities)."""
    return [c for k in range(1, len(modalities) + 1) for c in combinations(modalities, k)]


def subset_name(subset) -> str:
    return "+".join(subset)


def classification_metrics(predicted: np.ndarray, target: np.ndarray, n_classes: int) -> dict:
    """Accuracy and macro-F1 (mean over the classes that occur in target or prediction)."""
    if target.size == 0:
        return {"n": 0, "accuracy": None, "macro_f1": None}
    f1s = []
    for c in range(n_classes):
        tp = np.sum((predicted == c) & (target == c))
        fp, fn = np.sum((predicted == c) & (target != c)), np.sum((predicted != c) & (target == c))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"n": int(target.size), "accuracy": float(np.mean(predicted == target)), "macro_f1": float(np.mean(f1s))}


def recall_at(similarity: np.ndarray, k: int) -> float:
    """Fraction of queries (rows) whose true match (same index) is among the k most similar columns."""
    true = np.diag(similarity)[:, None]
    rank = np.sum(similarity > true, axis=1)  # items strictly more similar than the true match
    return float(np.mean(rank < k))


def label_recall_at(similarity: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of queries whose k most similar gallery items include one with the query's label."""
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]  # [N,k]
    return float(np.mean((labels[top] == labels[:, None]).any(axis=1)))


def recall1_ties(similarity: np.ndarray) -> float:
    """recall_at(similarity, 1) with ties broken at random, in expectation: a query whose true match ties with t
    other columns at the top counts 1 / (t + 1). Hamming similarities of short binary codes tie often."""
    true = np.diag(similarity)[:, None]
    beaten = np.sum(similarity > true, axis=1) > 0
    ties = np.sum(similarity == true, axis=1) - 1
    return float(np.mean(np.where(beaten, 0.0, 1.0 / (1 + ties))))


def label_recall1_ties(similarity: np.ndarray, labels: np.ndarray) -> float:
    """label_recall_at(similarity, labels, 1) with ties at the top broken at random, in expectation."""
    top = similarity == similarity.max(axis=1, keepdims=True)  # [N,N]
    same = labels[None, :] == labels[:, None]
    return float(np.mean((top & same).sum(axis=1) / top.sum(axis=1)))


def expected_calibration_error(probabilities: np.ndarray, target: np.ndarray, bins: int = 15) -> float | None:
    """ECE of probabilities [N,C] against class ids [N] (service/zero_shot.py's, the one the server's zero-shot
    calibration is judged by); None without items."""
    return None if target.size == 0 else zero_shot.expected_calibration_error(probabilities, target, bins)
