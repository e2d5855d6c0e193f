"""Training data in memory: cached backbone features per split, the present mask, labels (what train.py consumes).

load_train_data is the one path from a dataset manifest to features: training, evaluation, export and the
fine-tuning refresh all go through it, so they see the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from service.manifest import MODALITIES
from training.data.dataset import Example, labels_of, load_dataset
from training.data.features import FeatureCache, extract_features
from training.data.specs import preprocess_for
from training.encoders import backbone_options
from training.model.backbones import build_backbone


@dataclass
class Split:
    features: dict[str, torch.Tensor]  # modality → [N,F_m] f32, zero rows where absent
    present: torch.Tensor  # [N,M] f32, columns in TrainData.modalities order
    labels: torch.Tensor  # [N] int64 class indices
    ids: list[str]
    live: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None  # fine-tuning: features computed now
    # training views: modality → [N,S,F]; slot 0 is the item's own rendering, items with fewer views repeat it
    views: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def take(
        self, rows: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Features, present mask and labels of `rows`; with a generator, one random view per row and modality."""
        features = self.live(rows) if self.live else {m: f[rows] for m, f in self.features.items()}
        if generator is not None and not self.live:
            for m, table in self.views.items():
                slots = torch.randint(table.shape[1], (len(rows),), generator=generator)  # [B]
                features[m] = table[rows, slots]  # [B,F]
        return features, self.present[rows], self.labels[rows]


@dataclass
class TrainData:
    modalities: list[str]  # canonical order (image, text, audio) restricted to what the data has
    labels: list[str]  # class names; index = class id
    splits: dict[str, Split]
    examples: dict[str, list] = field(default_factory=dict)  # split → [Example] in row order

    def feature_dims(self) -> dict[str, int]:
        return {m: int(self.splits["train"].features[m].shape[1]) for m in self.modalities}


def make_split(examples: list, modalities: list[str], labels: list[str], features: dict[str, np.ndarray]) -> Split:
    """features: modality → [N_present, F] for the examples having it, in order (extract_features' layout)."""
    present = np.array([[getattr(e, m) is not None for m in modalities] for e in examples], np.float32)  # [N,M]
    dense = {}
    for column, m in enumerate(modalities):
        rows = np.flatnonzero(present[:, column])
        table = np.zeros((len(examples), features[m].shape[1]), np.float32)  # [N,F]
        table[rows] = features[m]
        dense[m] = torch.from_numpy(table)
    index = {label: i for i, label in enumerate(labels)}
    targets = torch.tensor([index[e.label] for e in examples], dtype=torch.long)
    return Split(dense, torch.from_numpy(present), targets, [e.id for e in examples])


CLEAN = "clean"  # TrainData's name for the robustness set (cfg.robustness_data): clean renderings, by group


def view_examples(items: list[Example], modality: str) -> list[Example]:
    """Every training view of `modality` as an Example of its own, in (item, view) order."""
    return [Example(id=f"{e.id}#{k}", split=e.split, label=e.label, **{modality: path})
            for e in items for k, path in enumerate(e.views.get(modality, ()))]  # fmt: skip


def view_table(items: list[Example], modality: str, own: torch.Tensor, views: np.ndarray) -> torch.Tensor:
    """own [N,F] (dense, zero where absent) + views [V,F] (view_examples' order) → [N,S,F], S = 1 + most views."""
    counts = [len(e.views.get(modality, ())) for e in items]
    table = own.unsqueeze(1).repeat(1, 1 + max(counts, default=0), 1)  # every slot starts as the item itself
    start = 0
    for row, count in enumerate(counts):
        table[row, 1 : 1 + count] = torch.from_numpy(views[start : start + count])
        start += count
    return table


def load_examples(cfg) -> dict[str, list[Example]]:
    """The dataset's items by split (train / val / test, + CLEAN when cfg.robustness_data exists), validated."""
    examples = load_dataset(Path(cfg.data), check_media=cfg.check_media)
    by_split = {s: [e for e in examples if e.split == s] for s in ("train", "val", "test")}
    robustness = Path(cfg.data).parent / cfg.robustness_data  # relative to the dataset manifest
    if cfg.robustness_data and robustness.is_file():
        by_split[CLEAN] = load_dataset(robustness, check_media=cfg.check_media)
    return by_split


def load_train_data(cfg, by_split: dict[str, list] | None = None, backbone_state: dict | None = None) -> TrainData:
    """Dataset → backbone features (cached on disk; fine-tuned weights from backbone_state, if any) → one Split
    per train/val/test (+ CLEAN when cfg.robustness_data exists); train items' views become Split.views."""
    torch.set_num_threads(cfg.threads)  # the backbones (cache misses) are worth the threads
    by_split = load_examples(cfg) if by_split is None else by_split
    main = [e for s in ("train", "val", "test") for e in by_split.get(s, [])]
    labels = labels_of(main)
    modalities = [m for m in MODALITIES if any(getattr(e, m) is not None for e in main)]
    cache, specs = FeatureCache(Path(cfg.cache_dir)), preprocess_for(cfg)
    features, views = {s: {} for s in by_split}, {}
    for m in modalities:
        backbone = build_backbone(m, tuned=(backbone_state or {}).get(m), **backbone_options(cfg))
        for s, items in by_split.items():
            if any(getattr(e, m) is not None for e in items):
                features[s][m] = extract_features(items, m, backbone, cache, specs=specs, progress=cfg.progress)
        if extra := view_examples(by_split.get("train", []), m):
            views[m] = extract_features(extra, m, backbone, cache, specs=specs, progress=cfg.progress)
        del backbone  # loaded once per modality, frozen
    dims = {m: next(f[m].shape[1] for f in features.values() if m in f) for m in modalities}
    for s in features:  # a split without any item of a modality still needs [0,F] tables
        for m in modalities:
            features[s].setdefault(m, np.zeros((0, dims[m]), np.float32))
    splits = {s: make_split(items, modalities, labels, features[s]) for s, items in by_split.items()}
    train = splits["train"]
    train.views = {m: view_table(by_split["train"], m, train.features[m], v) for m, v in views.items()}
    return TrainData(modalities, labels, splits, by_split)
