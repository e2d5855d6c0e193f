"""One rank of a torchrun test job: `torchrun --standalone --nproc-per-node 2 -m tests.unit.training.ddp_worker
OUT EPOCHS` trains on the tiny synthetic data of test_train_export into OUT/rank<R> (only rank 0 may write there);
train() itself logs each epoch and, at the end, the digest of the rank's weights."""

from __future__ import annotations

import sys
from pathlib import Path

from training import distributed
from training.data.splits import TrainData

from .test_train_export import CLASSES, MODALITIES, config, synthetic_split


def tiny_data() -> TrainData:
    splits = {"train": synthetic_split(160, 0), "val": synthetic_split(40, 1), "test": synthetic_split(60, 2)}
    return TrainData(MODALITIES, [str(c) for c in range(CLASSES)], splits)


def main(out: str, epochs: str, resume: str = "false") -> None:
    from training.train import train

    here = distributed.world()
    cfg = config(epochs=int(epochs), patience=10**6, device="cpu", resume=resume == "true")
    result = train(cfg, tiny_data(), out_dir=Path(out) / f"rank{here.rank}")
    print(f"rank {here.rank}: best val accuracy {result.best_val_accuracy:.4f}", flush=True)
    distributed.teardown()


if __name__ == "__main__":
    main(*sys.argv[1:])
