"""Test-split evaluation: every modality subset, fused vs single modality, cross-modal retrieval, confusion
matrix, and the four fusion strategies side by side. Results are a plain dict (evaluation.json); the model
card renders it (training/model_card.py).

A subset's rows are the test items that have all of its modalities; the others are masked out of
`present`, exactly as if the request had carried only that subset.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from service.manifest import VIDEO_SLOTS
from training.data.splits import Split, TrainData, restrict
from training.evaluate_search import search_metrics
from training.evaluate_video import video_metrics
from training.export_encoders import ort_session
from training.export_fusion import export_fusion
from training.metrics import classification_metrics, label_recall_at, recall_at, subset_name, subsets
from training.model.fused import FusedModel
from training.robustness import calibration, robustness
from training.train import predict, train

FUSION_ORDER = ("concat", "gated", "attention", "late")


def subset_metrics(model: FusedModel, split: Split) -> dict[str, dict]:
    out, video = {}, model.modalities != model.encoders
    for subset in subsets(model.modalities):
        part, present = restrict(split, subset, model.modalities)
        if video and not len(part):  # 31 subsets of 5 slots: a video model's table keeps those the split has
            continue
        logits, _, _ = predict(model, part, present)
        out[subset_name(subset)] = classification_metrics(
            logits.argmax(1).numpy(), part.labels.numpy(), model.n_classes
        )
    return out


def plain_slots(model: FusedModel, split: Split) -> list[str]:
    """The model's slots, or for a video model the non-video slots the split gives (its frames and sound are
    scored in evaluate_video; its image / audio slots may never be given when only clips fill them)."""
    if model.modalities == model.encoders:
        return model.modalities
    given = [m for i, m in enumerate(model.modalities) if bool((split.present[:, i] > 0.5).any())]
    return [m for m in given if m not in VIDEO_SLOTS] or given


def fused_vs_single(model: FusedModel, split: Split) -> dict:
    """On the items that have every modality: all of them fused vs each one alone (same items)."""
    used = plain_slots(model, split)
    full, _ = restrict(split, tuple(used), model.modalities)
    scores = {name: m["accuracy"] for name, m in subset_metrics(model, full).items()}
    singles = {m: scores.get(m) for m in used}  # absent: no row has every slot
    best = max(singles, key=lambda m: singles[m] or 0.0)
    fused = scores.get(subset_name(used))
    gain = None if fused is None or singles[best] is None else fused - singles[best]
    return {"n": len(full), "fused": fused, "single": singles, "best_single": best, "gain": gain}


def retrieval(model: FusedModel, split: Split) -> dict[str, dict]:
    """Cross-modal retrieval a→b among the test items having both, both directions: recall@1/@5 of the
    item itself (instance) and of any item with the same label (class)."""
    _, _, embeddings = predict(model, split)
    out = {}
    for i, a in enumerate(model.modalities):
        for j, b in enumerate(model.modalities):
            both = ((split.present[:, i] > 0.5) & (split.present[:, j] > 0.5)).numpy()
            if a == b or both.sum() < 2:
                continue
            sim = embeddings[a].numpy()[both] @ embeddings[b].numpy()[both].T  # [N,N] cosine (unit norm)
            labels = split.labels.numpy()[both]
            out[f"{a}->{b}"] = {"n": int(both.sum()), "recall@1": recall_at(sim, 1), "recall@5": recall_at(sim, 5),
                                "label_recall@1": label_recall_at(sim, labels, 1)}  # fmt: skip
    return out


def confusion(model: FusedModel, split: Split) -> np.ndarray:
    logits, _, _ = predict(model, split)
    matrix = np.zeros((model.n_classes, model.n_classes), dtype=np.int64)  # [true, predicted]
    np.add.at(matrix, (split.labels.numpy(), logits.argmax(1).numpy()), 1)
    return matrix


def evaluate(model: FusedModel, data: TrainData, split: str = "test", matryoshka_dims=(), label_vectors=None) -> dict:
    """The test report. matryoshka_dims: the prefixes the model was trained for (TrainConfig's); label_vectors:
    the label names through the text encoder [L,D] (export.model_label_embeddings) for zero-shot."""
    part = data.splits[split]
    logits, _, _ = predict(model, part)
    report = {
        "split": split,
        "fusion": model.fusion.strategy,
        "all_available": classification_metrics(logits.argmax(1).numpy(), part.labels.numpy(), model.n_classes),
        "subsets": subset_metrics(model, part),
        "fused_vs_single": fused_vs_single(model, part),
        "retrieval": retrieval(model, part),
        "confusion": confusion(model, part).tolist(),
        "fusion_parameters": model.fusion_parameters(),
        "calibration": calibration(model, data, split),
        "robustness": robustness(model, data),
        "video": video_metrics(model, data, split),  # None without video
    }
    return report | {
        "search": search_metrics(model, data, list(matryoshka_dims), report["subsets"], label_vectors, split)
    }


def plot_confusion(matrix, labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.imshow(matrix, cmap="Blues")
    for (r, c), value in np.ndenumerate(matrix):
        colour = "white" if value > matrix.max() / 2 else "black"
        ax.text(c, r, str(value), ha="center", va="center", fontsize=7, color=colour)
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def fusion_latency_ms(model: FusedModel, batch_sizes=(1, 32), repeats: int = 200) -> dict[str, float]:
    """Median ORT latency (1 thread) of the exported fusion graph, all modalities present."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fusion.onnx"
        export_fusion(model, path, tolerance=1e-4)  # as export.py: parity is checked there, this is for timing
        session = ort_session(path, threads=1)
        out = {}
        for batch in batch_sizes:
            feeds = {f"{m}_embedding": np.random.default_rng(0).normal(size=(batch, model.dim)).astype(np.float32)
                     for m in model.modalities}  # fmt: skip
            feeds["present"] = np.ones((batch, len(model.modalities)), np.float32)
            session.run(None, feeds)  # warm-up
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                session.run(None, feeds)
                times.append(time.perf_counter() - start)
            out[f"bs{batch}"] = float(np.median(times) * 1000)
    return out


def compare_fusions(cfg, data: TrainData, trained: dict[str, FusedModel] | None = None) -> list[dict]:
    """Train every fusion strategy on the same data and seed (reusing `trained` ones); one row each."""
    trained = dict(trained or {})
    rows = []
    for strategy in tqdm(FUSION_ORDER, desc="fusion comparison", unit="fusion", disable=not cfg.progress):
        if strategy not in trained:
            run_cfg = dataclasses.replace(cfg, fusion=strategy, progress=False)
            trained[strategy] = train(run_cfg, data).model
        model = trained[strategy]
        report = subset_metrics(model, data.splits["test"])
        rows.append({
            "fusion": strategy,
            "subsets": {name: m["accuracy"] for name, m in report.items()},
            "fusion_parameters": model.fusion_parameters(),
            "latency_ms": fusion_latency_ms(model),
        })  # fmt: skip
    return rows
