"""Answers on clean, ordinary inputs and calibrated confidence: the robustness set (TrainData's CLEAN split,
grouped by `meta.group`) and expected calibration error before and after temperature scaling.

- accuracy per modality and group (image polarity × filter × size, audio per accent, text per language);
- same-label cross-modal recall@1 for every ordered modality pair: does a clean query's nearest item of the
  other modality carry its label;
- the spoken-word check: for each of a few held-out voices and each canonical clean image, the nearest of
  that voice's ten spoken digit words is the image's digit.
"""

from __future__ import annotations

import numpy as np
import torch

from training.data.demo_views import CHECK_VOICES
from training.data.splits import CLEAN, TrainData
from training.metrics import expected_calibration_error
from training.model.fused import FusedModel
from training.train import predict

CANONICAL_IMAGE = "dark-on-light bicubic 64px"  # the training data's rendering, minus the corruption


def group_accuracy(predicted: np.ndarray, target: np.ndarray, examples: list) -> dict[str, dict[str, dict]]:
    """{modality: {group: {"n", "accuracy"}}} in first-seen group order."""
    out: dict[str, dict[str, list[int]]] = {}
    for row, example in enumerate(examples):
        out.setdefault(example.meta.get("modality", "?"), {}).setdefault(example.meta.get("group", "?"), []).append(row)
    return {m: {g: {"n": len(rows), "accuracy": float(np.mean(predicted[rows] == target[rows]))}
                for g, rows in groups.items()} for m, groups in out.items()}  # fmt: skip


def _rows_of(examples: list, modality: str, **meta) -> list[int]:
    return [i for i, e in enumerate(examples) if e.meta.get("modality") == modality
            and all(e.meta.get(k) == v for k, v in meta.items())]  # fmt: skip


def clean_recall(embeddings: dict[str, np.ndarray], labels: np.ndarray, examples: list) -> dict[str, float]:
    """Same-label recall@1 for every ordered pair a→b over the clean items of each modality."""
    out = {}
    for a in embeddings:
        for b in embeddings:
            qa, gb = _rows_of(examples, a), _rows_of(examples, b)
            if a == b or not qa or not gb:
                continue
            nearest = np.asarray(gb)[(embeddings[a][qa] @ embeddings[b][gb].T).argmax(axis=1)]
            out[f"{a}->{b}"] = float(np.mean(labels[nearest] == labels[qa]))
    return out


def spoken_word_check(embeddings: dict[str, np.ndarray], labels: np.ndarray, examples: list) -> dict | None:
    """Canonical clean image of digit d vs the 10 words of a held-out voice: is word d the nearest?"""
    images = _rows_of(examples, "image", group=CANONICAL_IMAGE)
    if not images or "audio" not in embeddings:
        return None
    passed, total, strict = 0, 0, []
    first = {int(labels[i]): i for i in reversed(images)}  # the first canonical image of each digit
    for voice in CHECK_VOICES:
        words = _rows_of(examples, "audio", voice=voice)
        if len({int(labels[w]) for w in words}) < 10:
            continue
        nearest = labels[np.asarray(words)[(embeddings["image"][images] @ embeddings["audio"][words].T).argmax(1)]]
        passed, total = passed + int(np.sum(nearest == labels[images])), total + len(images)
        lookup = dict(zip(images, nearest, strict=True))
        strict += [bool(lookup[i] == d) for d, i in sorted(first.items())]
    return {"voices": list(CHECK_VOICES), "all_images": passed / max(total, 1), "images": total,
            "first_image_per_digit": f"{sum(strict)}/{len(strict)}"}  # fmt: skip


def robustness(model: FusedModel, data: TrainData) -> dict | None:
    """Accuracy per group, clean cross-modal recall and the spoken-word check on the CLEAN split."""
    if CLEAN not in data.splits or not len(data.splits[CLEAN]):
        return None
    split, examples = data.splits[CLEAN], data.examples[CLEAN]
    if split.item is not None:  # a clean clip is a row per segment
        examples = [examples[i] for i in split.item.tolist()]
    logits, _, embeddings = predict(model, split)
    labels = split.labels.numpy()
    # each clean item has exactly one modality: keep that modality's rows of its embedding table
    present = {m: embeddings[m].numpy() for m in model.modalities}
    return {
        "accuracy": group_accuracy(logits.argmax(1).numpy(), labels, examples),
        "label_recall@1": clean_recall(present, labels, examples),
        "spoken_word_check": spoken_word_check(present, labels, examples),
    }


def calibration(model: FusedModel, data: TrainData, split: str = "test") -> dict:
    """ECE of the fused answer on `split` (each item with what it has) before and after temperature scaling."""
    part = data.splits[split]
    fitted = model.temperature.clone()
    out = {"temperatures": dict(zip(["fused", *model.modalities], fitted.tolist(), strict=True))}
    for name, scale in (("ece_before", torch.ones_like(fitted)), ("ece_after", fitted)):
        model.temperature.copy_(scale)
        logits, _, _ = predict(model, part)
        out[name] = expected_calibration_error(torch.softmax(logits, 1).numpy(), part.labels.numpy())
    model.temperature.copy_(fitted)
    return out
