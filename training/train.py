"""Train the fused model on cached frozen-backbone features (or live, partly tuned backbones: finetune.py).

Deterministic for a seed (one torch.Generator drives shuffling and modality dropout), AdamW, early
stopping on validation fused accuracy, the best checkpoint kept. Features come from
training/data/features.py's on-disk cache, so re-training the heads on the same data takes seconds.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from training import finetune
from training.calibration import calibrate
from training.data.splits import Split, TrainData
from training.losses import total_loss
from training.model.fused import FusedModel, build_model, save_checkpoint
from training.provenance import run_record


@dataclass
class TrainResult:
    model: FusedModel
    history: list[dict]
    best_epoch: int
    best_val_accuracy: float
    temperatures: dict[str, float]  # calibration fitted on the validation split (training/calibration.py)
    run: dict = field(default_factory=dict)  # what it was trained on (provenance.py), once written to a run


def modality_dropout(present: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Drop each present modality with probability p, keeping at least one per row. [B,M] → [B,M]."""
    if p <= 0:
        return present
    has = present > 0.5
    keep = (torch.rand(present.shape, generator=generator) >= p) & has
    emptied = keep.sum(dim=1) == 0
    pick = (torch.rand(present.shape, generator=generator) * has).argmax(dim=1)  # a random present column
    keep[emptied, pick[emptied]] = True
    return keep.to(present.dtype)


@torch.no_grad()
def predict(model: FusedModel, split: Split, present: torch.Tensor | None = None, batch: int = 512):
    """→ logits [N,C], fused [N,D], embeddings {m: [N,D]} in eval mode (present defaults to the split's)."""
    model.eval()
    present = split.present if present is None else present
    outs = []
    for start in range(0, len(split), batch):
        rows = torch.arange(start, min(start + batch, len(split)))
        features, _, _ = split.take(rows)
        outs.append(model(features, present[rows]))
    logits = torch.cat([o.logits for o in outs]) if outs else torch.zeros(0, model.n_classes)
    fused = torch.cat([o.fused for o in outs]) if outs else torch.zeros(0, model.dim)
    embeddings = {m: torch.cat([o.embeddings[m] for o in outs]) for m in model.modalities} if outs else {}
    return logits, fused, embeddings


def _epoch(model, split: Split, optimizer, cfg, generator: torch.Generator) -> dict[str, float]:
    model.train()
    order = torch.randperm(len(split), generator=generator)
    sums: dict[str, float] = {}
    batches = 0
    for start in range(0, len(split), cfg.batch_size):
        features, present, labels = split.take(order[start : start + cfg.batch_size], generator)  # a random view
        dropped = modality_dropout(present, cfg.modality_dropout, generator)  # [B,M]
        out = model(features, dropped)
        # the auxiliary and InfoNCE terms see every present modality: dropout is there to teach fusion
        loss, parts = total_loss(out, present, labels, model.modalities, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        parts["loss"] = float(loss.detach())
        for name, value in parts.items():
            sums[name] = sums.get(name, 0.0) + value
        batches += 1
    return {f"train_{name}": value / max(batches, 1) for name, value in sums.items()}


def _validate(model: FusedModel, split: Split) -> dict[str, float]:
    logits, _, _ = predict(model, split)
    if not len(split):
        return {"val_loss": float("nan"), "val_accuracy": 0.0}
    loss = torch.nn.functional.cross_entropy(logits, split.labels)
    accuracy = (logits.argmax(1) == split.labels).float().mean()
    return {"val_loss": float(loss), "val_accuracy": float(accuracy)}


def train(cfg, data: TrainData, *, out_dir: Path | None = None) -> TrainResult:
    """Train one model; with out_dir, write model.pt, history.json and training_curves.png there."""
    torch.manual_seed(cfg.seed)
    # the heads are small: one thread is ~25x faster than two on a busy 2-core machine (no sync stalls);
    # live backbones (fine-tuning) are big enough to use every thread
    torch.set_num_threads(cfg.threads if cfg.finetune_last > 0 else 1)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = build_model(data.modalities, data.feature_dims(), len(data.labels), cfg)
    if cfg.finetune_last > 0:
        finetune.attach_live_backbones(model, data, cfg)
    groups = finetune.parameter_groups(model, cfg)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    history, best = [], (-1.0, 0, None)  # (val accuracy, epoch, state)
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"train {cfg.fusion}", unit="epoch", disable=not cfg.progress)
    for epoch in bar:
        row = {"epoch": epoch} | _epoch(model, data.splits["train"], optimizer, cfg, generator)
        row |= _validate(model, data.splits["val"])
        schedule.step()
        history.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_accuracy']:.3f}")
        if row["val_accuracy"] > best[0]:
            best = (row["val_accuracy"], epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= cfg.patience:
            break  # early stopping: no validation improvement for `patience` epochs
    model.load_state_dict(best[2])
    if cfg.finetune_last > 0:
        finetune.detach_backbones(model, data, cfg)  # tuned weights → model.backbone_state; fresh features
    temperatures = calibrate(model, data.splits["val"])  # inside the model, so inside fusion.onnx
    result = TrainResult(model.eval(), history, best[1], best[0], temperatures)
    if out_dir is not None:
        result.run = write_run(result, data, cfg, Path(out_dir))
    return result


def write_run(result: TrainResult, data: TrainData, cfg, out_dir: Path) -> dict:
    """model.pt (with the run record it returns), history.json and training_curves.png in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = {"config": cfg.as_dict(), "best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy}
    extra |= {"epochs_run": len(result.history), "temperatures": result.temperatures}
    extra["run"] = run_record(cfg, data.examples, data.modalities)  # what evaluate / export check it against
    save_checkpoint(result.model, out_dir / "model.pt", labels=data.labels, extra=extra)
    (out_dir / "history.json").write_text(json.dumps(result.history, indent=1) + "\n")
    plot_curves(result.history, out_dir / "training_curves.png", result.best_epoch)
    return extra["run"]


def plot_curves(history: list[dict], path: Path, best_epoch: int) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: training machines have no display
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in ("train_loss", "train_fused", "train_aux", "train_nce", "val_loss"):
        if key in history[0]:
            left.plot(epochs, [row[key] for row in history], label=key)
    left.set(xlabel="epoch", ylabel="loss", title="losses")
    left.legend(fontsize=8)
    right.plot(epochs, [row["val_accuracy"] for row in history], label="val fused accuracy")
    right.axvline(best_epoch, color="grey", linestyle=":", label=f"best (epoch {best_epoch})")
    right.set(xlabel="epoch", ylabel="accuracy", title="validation")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
