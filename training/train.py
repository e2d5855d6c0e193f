"""Train the fused model on cached frozen-backbone features (or live, partly tuned backbones: finetune.py).

Deterministic for a seed (one torch.Generator drives shuffling and modality dropout), AdamW, early
stopping on validation fused accuracy, the best checkpoint kept. Features come from
training/data/features.py's on-disk cache, so re-training the heads on the same data takes seconds.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from training import checkpointing, distributed, finetune
from training.calibration import calibrate
from training.data.splits import Split, TrainData
from training.device import autocast, grad_scaler, resolve_device
from training.losses import total_loss
from training.model.fused import FusedModel, FusedOutput, build_model, save_checkpoint
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
    device = next(model.parameters()).device
    outs = []
    for start in range(0, len(split), batch):
        rows = torch.arange(start, min(start + batch, len(split)))
        features, _, _ = split.take(rows)
        out = model({m: f.to(device) for m, f in features.items()}, present[rows].to(device))
        outs.append(out if device.type == "cpu" else _to_cpu(out))
    logits = torch.cat([o.logits for o in outs]) if outs else torch.zeros(0, model.n_classes)
    fused = torch.cat([o.fused for o in outs]) if outs else torch.zeros(0, model.dim)
    embeddings = {m: torch.cat([o.embeddings[m] for o in outs]) for m in model.modalities} if outs else {}
    return logits, fused, embeddings


def _to_cpu(out: FusedOutput) -> FusedOutput:
    cpu = {k: {m: t.cpu() for m, t in v.items()} if isinstance(v, dict) else v.cpu() for k, v in vars(out).items()}
    return FusedOutput(**cpu)


@dataclass
class _Loop:
    """What one epoch needs: the model (and DDP around it under torchrun), its optimizer, where it runs."""

    model: FusedModel
    net: torch.nn.Module  # the model, or DistributedDataParallel around it
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    device: torch.device
    world: distributed.World


def _batch(split: Split, rows: torch.Tensor, cfg, loop: _Loop):
    """→ features, present, labels, dropped mask of this rank's share of `rows`, and its loss weight.

    Every rank draws the randomness of the whole global batch (views, modality dropout) from the same seeded
    generator, then keeps rows rank, rank + N, …: the streams stay identical on every rank and the global batch
    sees what one process would. The weight makes DDP's mean of per-rank means the global batch's mean."""
    size, rank = loop.world.size, loop.world.rank
    local = torch.arange(rank, len(rows), size) if size > 1 else None
    if local is not None and split.live:  # live backbones are the cost: each rank computes its own rows only
        features, present, labels = split.take(rows[local])
        return (
            features,
            present,
            labels,
            modality_dropout(split.present[rows], cfg.modality_dropout, loop.generator)[local],
            len(local) * size / len(rows),
        )
    features, present, labels = split.take(rows, loop.generator)  # a random view
    dropped = modality_dropout(present, cfg.modality_dropout, loop.generator)  # [B,M]
    if local is None:
        return features, present, labels, dropped, 1.0
    features = {m: f[local] for m, f in features.items()}
    return features, present[local], labels[local], dropped[local], len(local) * size / len(rows)


def _epoch(split: Split, cfg, loop: _Loop) -> dict[str, float]:
    loop.net.train()
    order = torch.randperm(len(split), generator=loop.generator)
    sums: dict[str, float] = {}
    batches = 0
    for start in range(0, len(split), cfg.batch_size):
        rows = order[start : start + cfg.batch_size]
        if len(rows) < loop.world.size:
            continue  # a last batch smaller than the world: every rank skips it alike (never at world size 1)
        features, present, labels, dropped, weight = _batch(split, rows, cfg, loop)
        to = loop.device
        features, present = {m: f.to(to) for m, f in features.items()}, present.to(to)
        labels, dropped = labels.to(to), dropped.to(to)
        with autocast(to, cfg.precision):
            out = loop.net(features, dropped)
            # the auxiliary and InfoNCE terms see every present modality: dropout is there to teach fusion
            loss, parts = total_loss(out, present, labels, loop.model.modalities, cfg)
        loop.optimizer.zero_grad(set_to_none=True)
        loop.scaler.scale(loss if weight == 1.0 else loss * weight).backward()
        loop.scaler.step(loop.optimizer)  # the plain optimizer step when the scaler is off (CPU, bf16, fp32)
        loop.scaler.update()
        parts["loss"] = float(loss.detach())
        for name, value in parts.items():
            sums[name] = sums.get(name, 0.0) + value
        batches += 1
    means = {f"train_{name}": value / max(batches, 1) for name, value in sums.items()}
    return distributed.mean_over_ranks(means, loop.device)


def _validate(model: FusedModel, split: Split) -> dict[str, float]:
    logits, _, _ = predict(model, split)
    if not len(split):
        return {"val_loss": float("nan"), "val_accuracy": 0.0}
    loss = torch.nn.functional.cross_entropy(logits, split.labels)
    accuracy = (logits.argmax(1) == split.labels).float().mean()
    return {"val_loss": float(loss), "val_accuracy": float(accuracy)}


def _setup(cfg, data: TrainData) -> _Loop:
    device = resolve_device(cfg.device)
    here = distributed.setup(device)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = build_model(data.modalities, data.feature_dims(), len(data.labels), cfg)
    if cfg.finetune_last > 0:
        finetune.attach_live_backbones(model, data, cfg)
    model.to(device)
    groups = finetune.parameter_groups(model, cfg)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    net = distributed.wrap(model, device)
    return _Loop(model, net, optimizer, schedule, grad_scaler(device, cfg.precision), generator, device, here)


def train(cfg, data: TrainData, *, out_dir: Path | None = None, on_epoch=None) -> TrainResult:
    """Train one model; with out_dir, write model.pt, history.json, training_curves.png and last.pt there (rank 0
    only under torchrun). cfg.resume continues from out_dir's last.pt. on_epoch(epoch, row): called after each
    epoch's checkpoint (tests interrupt a run there)."""
    torch.manual_seed(cfg.seed)
    # the heads are small: one thread is ~25x faster than two on a busy 2-core machine (no sync stalls);
    # live backbones (fine-tuning) are big enough to use every thread
    torch.set_num_threads(cfg.threads if cfg.finetune_last > 0 else 1)
    loop = _setup(cfg, data)
    model, here = loop.model, loop.world
    last = Path(out_dir) / checkpointing.LAST if out_dir is not None else None
    # the run record hashes every item: only where a last.pt is written or read
    expected = checkpointing.fingerprint(cfg, run_record(cfg, data.examples, data.modalities)) if last else None
    first, history, best, stopped = 1, [], (-1.0, 0, None), False  # best: (val accuracy, epoch, state)
    state = distributed.from_main(lambda: checkpointing.load_last(last, expected)) if cfg.resume and last else None
    if state is not None:
        first, history, best, stopped = checkpointing.restore(loop, state)
    bar = tqdm(range(first, cfg.epochs + 1), desc=f"train {cfg.fusion}", unit="epoch",
               disable=not cfg.progress or not here.main or stopped)  # fmt: skip
    for epoch in [] if stopped else bar:
        row = {"epoch": epoch} | _epoch(data.splits["train"], cfg, loop)
        row |= _validate(model, data.splits["val"])
        loop.schedule.step()
        history.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_accuracy']:.3f}")
        if improves(row["val_accuracy"], history[:-1], best[0], cfg.select_tolerance):
            best = (row["val_accuracy"], epoch, copy.deepcopy(model.state_dict()))
        # early stopping (no validation improvement for `patience` epochs): rank 0 decides for every rank
        stopped = distributed.broadcast_flag(epoch - best[1] >= cfg.patience, loop.device)
        if last is not None and here.main:
            checkpointing.save_last(last, checkpointing.capture(loop, epoch, history, best, stopped, expected))
        if here.distributed:
            print(f"rank {here.rank} pid {os.getpid()}: epoch {epoch} done", flush=True)
        if on_epoch is not None:
            on_epoch(epoch, row)
        if stopped:
            break
    model.load_state_dict(best[2])
    model.to("cpu")  # calibration, export and evaluation run on the CPU
    if cfg.finetune_last > 0:
        finetune.detach_backbones(model, data, cfg)  # tuned weights → model.backbone_state; fresh features
    temperatures = calibrate(model, data.splits["val"])  # inside the model, so inside fusion.onnx
    result = TrainResult(model.eval(), history, best[1], best[0], temperatures)
    if here.distributed:
        print(f"rank {here.rank}: state_dict sha256 {state_digest(model)}", flush=True)
    if out_dir is not None and here.main:
        result.run = write_run(result, data, cfg, Path(out_dir))
    return result


def improves(accuracy: float, earlier: list[dict], best: float, tolerance: float) -> bool:
    """Whether an epoch becomes the kept one: above every earlier epoch, or (tolerance > 0) within `tolerance` of
    the best so far — on a validation split whose accuracy plateaus in noise, the later, more annealed epoch."""
    if tolerance <= 0:
        return accuracy > best
    top = max((row["val_accuracy"] for row in earlier), default=-1.0)
    return accuracy > top or accuracy >= top - tolerance


def state_digest(model: torch.nn.Module) -> str:
    """sha256 over the state_dict's names and bytes: equal on every rank when DDP kept them in step."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


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
