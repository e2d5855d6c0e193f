"""Training data in memory: cached backbone features per split, the present mask, labels (what train.py consumes).

load_train_data is the one path from a dataset manifest to features: training, evaluation, export and the
fine-tuning refresh all go through it, so they see the same numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from service.manifest import SLOTS, VIDEO_SLOTS
from training import distributed
from training.data.dataset import Example, labels_of, load_dataset
from training.data.features import FeatureCache, extract_features
from training.data.specs import preprocess_for
from training.data.video_decode import video_preprocess
from training.data.video_features import VideoFeatures
from training.data.video_rows import expand_views, plan_rows, video_tables
from training.device import resolve_device
from training.encoders import backbone_options
from training.model.backbones import build_backbone
from training.model.temporal import encoder_of


@dataclass
class Split:
    features: dict[str, torch.Tensor]  # modality → [N,F_m] f32, zero rows where absent
    present: torch.Tensor  # [N,M] f32, columns in TrainData.modalities order
    labels: torch.Tensor  # [N] int64 class indices
    ids: list[str]
    live: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None  # fine-tuning: features computed now
    # training views: modality → [N,S,F]; slot 0 is the item's own rendering, items with fewer views repeat it
    views: dict[str, torch.Tensor] = field(default_factory=dict)
    # video: a row per segment (training/data/video_rows.py); the example and segment of each row (-1: no video)
    item: torch.Tensor | None = None  # [N] i64
    segment: torch.Tensor | None = None  # [N] i64

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
    modalities: list[str]  # fusion's slots (service.manifest.SLOTS order) restricted to what the data has
    labels: list[str]  # class names; index = class id
    splits: dict[str, Split]
    examples: dict[str, list] = field(default_factory=dict)  # split → [Example] (a video example: several rows)
    encoders: list[str] = field(default_factory=list)  # the encoders the slots need (image, text, audio)

    def __post_init__(self) -> None:
        self.encoders = self.encoders or list(dict.fromkeys(encoder_of(m) for m in self.modalities))

    def feature_dims(self) -> dict[str, int]:
        """encoder → F (a video's frames are image features, its sound audio features)."""
        train = self.splits["train"].features
        slot = {encoder_of(m): m for m in reversed(self.modalities)}  # an encoder's own slot wins
        return {e: int(train[slot[e]].shape[-1]) for e in self.encoders}


def make_split(
    examples: list, modalities: list[str], labels: list[str], features: dict[str, np.ndarray], video=None
) -> Split:
    """features: modality → [N_present, F] for the examples having it, in order (extract_features' layout);
    video: VideoPart, when `modalities` has video slots (a row per segment then)."""
    base = [m for m in modalities if m not in VIDEO_SLOTS]
    present = np.array([[getattr(e, m) is not None for m in base] for e in examples], np.float32)  # [N,M]
    dense = {}
    for column, m in enumerate(base):
        rows = np.flatnonzero(present[:, column])
        table = np.zeros((len(examples), features[m].shape[1]), np.float32)  # [N,F]
        table[rows] = features[m]
        dense[m] = torch.from_numpy(table)
    index = {label: i for i, label in enumerate(labels)}
    if base == modalities:  # no video: one row per example
        targets = torch.tensor([index[e.label] for e in examples], dtype=torch.long)
        return Split(dense, torch.from_numpy(present), targets, [e.id for e in examples])
    return _segment_rows(examples, modalities, index, dense, present, video)


@dataclass(frozen=True)
class VideoPart:
    clips: list  # ClipFeatures of the split's examples having a video, in order
    k: int  # frames per segment (max_frames_per_segment)
    widths: dict[str, int]  # image / audio backbone feature widths


def _segment_rows(examples, modalities, index, dense, present, video: VideoPart) -> Split:
    """One row per segment of a video example (its other modalities repeated), one per other example."""
    base = [m for m in modalities if m not in VIDEO_SLOTS]
    rows = plan_rows(examples, video.clips)
    tables = video_tables(rows, video.clips, video.widths, video.k)  # [N,K,F_image], [N,F_audio]
    has = {"video_frames": tables["video_frames"].any(axis=(1, 2)), "video_audio": tables["video_audio"].any(axis=1)}
    kept = {m: present[rows.item, base.index(m)] if m in base else has[m] for m in modalities}
    mask = np.stack([kept[m] for m in modalities], axis=1).astype(np.float32)  # [N,S]
    item = torch.from_numpy(rows.item)
    columns = {m: dense[m][item] if m in base else torch.from_numpy(tables[m]) for m in modalities}
    targets = torch.tensor([index[label] for label in rows.labels], dtype=torch.long)
    ids = [examples[i].id for i in rows.item]
    return Split(columns, torch.from_numpy(mask), targets, ids, item=item, segment=torch.from_numpy(rows.segment))


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


def _video_part(cfg, by_split, backbones: dict, cache, specs) -> dict[str, VideoPart]:
    """split → VideoPart: the clips' per-segment features (the server's decoding, both backbones)."""
    video = video_preprocess(cfg)
    features = VideoFeatures(backbones, cache, specs, video, cfg.progress, device=resolve_device(cfg.device))
    widths = {m: int(getattr(b, "backbone", b).out_dim) for m, b in backbones.items()}
    return {s: VideoPart(features.of(items), video.max_frames_per_segment, widths) for s, items in by_split.items()}


def _slots(main: list[Example], videos: dict[str, VideoPart]) -> list[str]:
    """The slots a bundle of this data has (service.manifest.Encoders.slots): an encoder per modality given,
    the image encoder when any segment has frames, the audio encoder when any has sound; with video, its
    frames' slot follows the image encoder and its sound's the audio encoder."""
    encoders = {m for m in ("image", "text", "audio") if any(getattr(e, m) is not None for e in main)}
    clips = [c for part in videos.values() for c in part.clips]
    encoders |= {"image"} if any(c.has_frames.any() for c in clips) else set()
    encoders |= {"audio"} if any(c.has_sound.any() for c in clips) else set()
    return [s for s in SLOTS if encoder_of(s) in encoders and (s not in VIDEO_SLOTS or clips)]


def _warm_share(by_split: dict[str, list], m: str, backbone, cache, specs, device) -> None:
    """Under torchrun: this rank computes the cache misses of its share of the items (rank, rank + N, …), which
    extract_features flushes to the store; after the barrier every rank's full pass reads them all as hits."""
    here = distributed.world()
    if not distributed.active():
        return
    train = by_split.get("train", [])
    for items in [*by_split.values(), view_examples(train, m)]:
        share = items[here.rank :: here.size]
        if any(getattr(e, m) is not None for e in share):
            extract_features(share, m, backbone, cache, specs=specs, progress=False, device=device)
    distributed.barrier()


def _features(cfg, by_split: dict[str, list], main: list[Example], backbone_state: dict | None):
    """→ (split → {modality: [N_present,F]}, train views {modality: [V,F]}, split → VideoPart (video only)).
    Each backbone is loaded once; a video keeps the image and audio ones until its clips are done."""
    direct = [m for m in ("image", "text", "audio") if any(getattr(e, m) is not None for e in main)]
    has_video = any(e.video is not None for e in main)
    cache, specs, device = FeatureCache(Path(cfg.cache_dir)), preprocess_for(cfg), resolve_device(cfg.device)
    features, views, video_backbones = {s: {} for s in by_split}, {}, {}
    run = functools.partial(extract_features, cache=cache, specs=specs, progress=cfg.progress, device=device)
    for m in [m for m in ("image", "text", "audio") if m in direct or (has_video and m != "text")]:
        backbone = build_backbone(m, tuned=(backbone_state or {}).get(m), **backbone_options(cfg))
        _warm_share(by_split, m, backbone, cache, specs, device)
        for s, items in by_split.items():
            if any(getattr(e, m) is not None for e in items):
                features[s][m] = run(items, m, backbone)
        if extra := view_examples(by_split.get("train", []), m):
            views[m] = run(extra, m, backbone)
        if has_video and m != "text":
            video_backbones[m] = backbone
        del backbone  # loaded once per modality, frozen
    videos = _video_part(cfg, by_split, video_backbones, cache, specs) if has_video else {}
    return features, views, videos


def load_train_data(cfg, by_split: dict[str, list] | None = None, backbone_state: dict | None = None) -> TrainData:
    """Dataset → backbone features (cached on disk; fine-tuned weights from backbone_state, if any) → one Split
    per train/val/test (+ CLEAN when cfg.robustness_data exists); train items' views become Split.views; a
    video example becomes a row per segment (video_rows.py)."""
    torch.set_num_threads(cfg.threads)  # the backbones (cache misses) are worth the threads
    by_split = load_examples(cfg) if by_split is None else by_split
    main = [e for s in ("train", "val", "test") for e in by_split.get(s, [])]
    labels = labels_of(main)
    features, views, videos = _features(cfg, by_split, main, backbone_state)
    modalities = _slots(main, videos)
    dims = {m: f[m].shape[1] for f in features.values() for m in f}
    if videos:  # an encoder only a video uses still has its own slot (never present in training)
        dims |= {m: videos["train"].widths[m] for m in ("image", "audio") if m in modalities and m not in dims}
    for s in features:  # a split without any item of a modality still needs [0,F] tables
        for m in dims:
            features[s].setdefault(m, np.zeros((0, dims[m]), np.float32))
    splits = {s: make_split(items, modalities, labels, features[s], videos.get(s)) for s, items in by_split.items()}
    _attach_views(splits["train"], by_split["train"], views)
    encoders = [e for e in ("image", "text", "audio") if e in {encoder_of(m) for m in modalities}]
    return TrainData(modalities, labels, splits, by_split, encoders)


def _attach_views(train: Split, items: list[Example], views: dict[str, np.ndarray]) -> None:
    """Split.views: per row, the row's own features then its example's training views."""
    rows = [items[i] for i in train.item.tolist()] if train.item is not None else items
    for m, v in views.items():
        v = expand_views(items, m, v, train.item.numpy()) if train.item is not None else v
        train.views[m] = view_table(rows, m, train.features[m], v)


def restrict(split: Split, subset, modalities: list[str]) -> tuple[Split, torch.Tensor]:
    """Rows having every modality of `subset`, and their present mask with the other modalities off."""
    columns = [modalities.index(m) for m in subset]
    rows = torch.nonzero((split.present[:, columns] > 0.5).all(dim=1)).flatten()
    features, present, labels = split.take(rows)
    keep = torch.zeros(len(modalities))
    keep[columns] = 1.0
    return Split(features, present, labels, [split.ids[i] for i in rows]), present * keep
