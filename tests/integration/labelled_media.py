"""Small labelled media datasets for the encoder-family tests: `count` items per label, split 6 / 2 / 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

SPLIT = ["train"] * 6 + ["val"] * 2 + ["test"] * 2


def write_media_dataset(root: Path, modality: str, classes: dict, make: Callable[[object, int], bytes],
                        suffix: str) -> Path:  # fmt: skip
    """root/dataset.jsonl with one `modality` file per item under root/<modality>/, made by make(class value, seed)."""
    rows = []
    for k, (label, value) in enumerate(classes.items()):
        for i, split in enumerate(SPLIT):
            path = root / modality / f"{label}-{i}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(make(value, 100 * k + i))
            rows.append({"id": f"{label}-{i}", "split": split, "label": label, modality: f"{modality}/{path.name}"})
    (root / "dataset.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root / "dataset.jsonl"
