"""Training configuration: one flat dataclass (nanoGPT style), loaded from a TOML file in training/configs/
and overridable field by field from the command line (`--epochs 3 --fusion gated`).

Precedence: dataclass defaults < TOML file < command-line flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"
FUSIONS = ("concat", "gated", "attention", "late")


@dataclass
class TrainConfig:
    # data and outputs
    data: str = "data/tridigits/dataset.jsonl"  # JSONL manifest (see training/data/dataset.py)
    out_dir: str = "runs/tridigits"  # checkpoint, curves, evaluation report
    cache_dir: str = ".cache/fusionserve-features"  # frozen-backbone features, keyed by content hash
    robustness_data: str = ""  # optional JSONL of clean items grouped by meta.group, relative to `data`'s folder
    check_media: bool = True  # decode every image/audio file while validating the dataset (slow: ~10 ms a file)
    models_dir: str = "models"  # bundles go to <models_dir>/<name>/<version>/
    name: str = "tridigits"
    version: str = "1"
    # demo data (build-demo-data / build-default)
    demo_scale: float = 1.0
    demo_seed: int = 0
    # model
    fusion: str = "late"  # concat | gated | attention | late
    dim: int = 256  # joint embedding space
    hidden: int = 256  # fusion MLP width
    heads: int = 4  # attention fusion
    layers: int = 1  # attention fusion
    dropout: float = 0.1
    image_feature: str = "pooled"  # pooled (global average, 1280-d) | spatial (stage 5, 3x3 regions, 1008-d)
    contrastive: str = "label"  # label: every same-label item of any modality is a positive | item: paired rows
    finetune_last: int = 0  # 0 = frozen backbones (cached features); N > 0 tunes the last N blocks (slow)
    finetune_lr: float = 5e-5  # learning rate of the tuned backbone blocks (the heads use lr)
    # optimisation
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-2
    patience: int = 8  # early stopping on validation fused accuracy (epochs without improvement)
    seed: int = 0
    threads: int = 2  # torch / onnxruntime threads for backbones and export (head training uses 1)
    # losses
    w_fused: float = 1.0  # cross-entropy on the fused logits
    w_aux: float = 0.5  # per-modality cross-entropy (a linear head per modality embedding)
    w_nce: float = 0.2  # symmetric InfoNCE between co-present modality pairs
    temperature: float = 0.1
    modality_dropout: float = 0.3  # per item and present modality; at least one is always kept
    # evaluation / export
    compare_fusions: bool = True  # evaluate: train all four fusions on the same data and seed
    golden_count: int = 4
    quantize: str = ""  # "" or "int8": also write <name>-int8/<version>/ with int8 encoders
    progress: bool = True

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if self.image_feature not in ("pooled", "spatial"):
            raise ValueError(f"image_feature must be 'pooled' or 'spatial', got {self.image_feature!r}")
        if self.contrastive not in ("item", "label"):
            raise ValueError(f"contrastive must be 'item' or 'label', got {self.contrastive!r}")
        if self.quantize not in ("", "int8"):
            raise ValueError(f"quantize must be '' or 'int8', got {self.quantize!r}")
        if self.dim < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("dim, epochs and batch_size must be >= 1")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError("modality_dropout must be in [0, 1)")

    def bundle_dir(self, suffix: str = "") -> Path:
        return Path(self.models_dir) / f"{self.name}{suffix}" / self.version

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _field_types() -> dict[str, type]:
    defaults = TrainConfig()
    return {f.name: type(getattr(defaults, f.name)) for f in fields(TrainConfig)}


def load_toml(path: Path | str) -> dict:
    path = Path(path)
    if not path.is_file() and (CONFIG_DIR / path).is_file():
        path = CONFIG_DIR / path  # `--config tridigits.toml` finds the packaged file
    if not path.is_file() and (CONFIG_DIR / f"{path}.toml").is_file():
        path = CONFIG_DIR / f"{path}.toml"  # ... and so does `--config tridigits`
    values = tomllib.loads(path.read_text(encoding="utf-8"))
    unknown = sorted(set(values) - set(_field_types()))
    if unknown:
        raise ValueError(f"{path}: unknown config keys {unknown}")
    return values


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` plus one `--field-name VALUE` flag per TrainConfig field (default: not given)."""
    parser.add_argument("--config", default="default.toml", help="TOML file (a name in training/configs/ works)")
    group = parser.add_argument_group("config overrides")
    for name, kind in _field_types().items():
        flag = "--" + name.replace("_", "-")
        group.add_argument(flag, dest=name, type=_parse_bool if kind is bool else kind, default=None)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = load_toml(args.config)
    values |= {name: getattr(args, name) for name in _field_types() if getattr(args, name, None) is not None}
    return TrainConfig(**values)


def load_config(path: Path | str = "default.toml", **overrides) -> TrainConfig:
    return TrainConfig(**(load_toml(path) | overrides))
