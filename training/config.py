"""Training configuration: one flat dataclass (nanoGPT style), loaded from a TOML file in training/configs/
and overridable field by field from the command line (`--epochs 3 --fusion gated`).

Precedence: dataclass defaults < TOML file < command-line flags. Every problem is a ConfigError naming the
file or field (training/errors.py: printed without a traceback, exit code 2).

Names, runs and versions (docs/training.md): a run directory belongs to one model name, `runs/<name>`, unless
`out_dir` says otherwise; the version is chosen when the run is published (`export`), the next free number
unless `version` names one.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from service.publish import valid_version
from training.encoders import (
    TEXT_POOLING,
    audio_encoder_problem,
    image_encoder_problem,
    resolve_encoder,
    text_encoder_problem,
)
from training.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"
FUSIONS = ("concat", "gated", "attention", "late")


@dataclass
class TrainConfig:
    # data and outputs
    data: str = "data/tridigits/dataset.jsonl"  # JSONL manifest (see training/data/dataset.py)
    out_dir: str = ""  # checkpoint, curves, evaluation report; "" = runs/<name> (run_dir())
    cache_dir: str = ".cache/fusionserve-features"  # frozen-backbone features, keyed by content hash
    robustness_data: str = ""  # optional JSONL of clean items grouped by meta.group, relative to `data`'s folder
    check_media: bool = True  # decode every image/audio file while validating the dataset (slow: ~10 ms a file)
    models_dir: str = "models"  # bundles go to <models_dir>/<name>/<version>/
    name: str = "tridigits"
    version: str = ""  # "" = export publishes the next free version number
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
    # packaged EfficientNet-Lite0: pooled (global average, 1280-d) | spatial (stage 5, 3x3 regions, 1008-d);
    # a Hugging Face image_encoder: pooled (its pooler output) | cls (its first token)
    image_feature: str = "pooled"
    # encoders: a Hugging Face directory, or a model id in the local Hugging Face cache (training/encoders.py)
    image_encoder: str = ""  # "" = the packaged EfficientNet-Lite0
    text_encoder: str = ""  # "" = the packaged all-MiniLM-L6-v2
    text_pooling: str = "mean"  # mean over real tokens | cls (the first token)
    audio_encoder: str = ""  # "" = the packaged Whisper tiny.en, "whisper-base", or a Whisper / waveform encoder
    # video: how a clip becomes training rows (the bundle's VideoPreprocess; service/preprocess/video_plan.py)
    video_fps: float = 1.0  # frames kept per second of a segment
    video_max_frames: int = 8  # at most this many frames per segment
    video_segment_s: float = 4.0  # one training row per segment of this length
    video_overlap_s: float = 0.0  # seconds shared by consecutive segments
    video_pooling: str = "attention"  # a segment's frames → one embedding: attention (learned weights) | mean
    contrastive: str = "label"  # label: every same-label item of any modality is a positive | item: paired rows
    finetune_last: int = 0  # 0 = frozen backbones (cached features); N > 0 tunes the last N blocks (slow)
    finetune_lr: float = 5e-5  # learning rate of the tuned backbone blocks (the heads use lr)
    # optimisation
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-2
    patience: int = 8  # early stopping on validation fused accuracy (epochs without improvement)
    # keep the latest epoch within this of the best validation accuracy (0: the first best); it resets patience
    select_tolerance: float = 0.0
    seed: int = 0
    threads: int = 2  # torch / onnxruntime threads for backbones and export (head training uses 1)
    # where features, fine-tuning and the heads run (training/device.py): auto = the first GPU when one is visible
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # autocast: auto (bf16 on a GPU with it, else fp16; CPU fp32) | fp32 | bf16 | fp16
    resume: bool = False  # train: continue runs/<name> from its last finished epoch (last.pt) instead of epoch 1
    # losses
    w_fused: float = 1.0  # cross-entropy on the fused logits
    w_aux: float = 0.5  # per-modality cross-entropy (a linear head per modality embedding)
    w_nce: float = 0.2  # symmetric InfoNCE between co-present modality pairs
    temperature: float = 0.1
    # Matryoshka: the contrastive term also at each of these prefixes of the joint space (truncated and
    # re-normalised), so a search client may ask for a shorter vector (docs/training.md "Matryoshka"); [] = off
    matryoshka_dims: list[int] = dataclasses.field(default_factory=lambda: [64, 128])
    # the fused embedding in the contrastive term (zero-shot and rerank score it against text-slot label embeddings)
    contrastive_fused: bool = True
    matryoshka_weight: float = 1.0  # each prefix's term relative to the full dim's (MatryoshkaLoss's weights)
    modality_dropout: float = 0.3  # per item and present modality; at least one is always kept
    # evaluation / export
    compare_fusions: bool = True  # evaluate: train all four fusions on the same data and seed
    golden_count: int = 4
    card_notes: str = ""  # markdown appended to the model card: a path, or a file next to the packaged configs
    quantize: str = ""  # "" or "int8": also write <name>-int8/<version>/ with int8 encoders
    progress: bool = True

    def __post_init__(self) -> None:
        for field in ("text_encoder", "image_encoder", "audio_encoder"):  # a model id → its cached snapshot
            setattr(self, field, resolve_encoder(getattr(self, field)))
        problems = [p for check in _CHECKS if (p := check(self))]
        if problems:
            raise ConfigError("invalid config: " + "; ".join(problems))

    def run_dir(self) -> Path:
        """Where train writes the checkpoint and evaluate / export read it: one directory per model name."""
        return Path(self.out_dir) if self.out_dir else Path("runs") / self.name

    def model_dir(self, suffix: str = "") -> Path:
        """<models_dir>/<name><suffix>: the model's versions (suffix "-int8" for the quantised sibling)."""
        return Path(self.models_dir) / f"{self.name}{suffix}"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _one_of(field: str, allowed: tuple[str, ...]):
    def check(cfg: TrainConfig) -> str | None:
        value = getattr(cfg, field)
        return None if value in allowed else f"{field} must be one of {', '.join(map(repr, allowed))}, got {value!r}"

    return check


def _name_and_version(cfg: TrainConfig) -> str | None:
    if not cfg.name or cfg.name.startswith(".") or any(c in cfg.name for c in "/\\ "):
        return f"name must be a plain directory name (no '/', spaces or leading '.'), got {cfg.name!r}"
    try:
        valid_version(cfg.version or "1")  # the publishing rule itself (service/publish.py); "" = the next free
    except ValueError as error:
        return f"version: {error}"
    return None


def _sizes(cfg: TrainConfig) -> str | None:
    if cfg.dim < 1 or cfg.epochs < 1 or cfg.batch_size < 1:
        return "dim, epochs and batch_size must be >= 1"
    if cfg.fusion == "attention" and cfg.dim % max(cfg.heads, 1):
        return f"dim ({cfg.dim}) must be divisible by heads ({cfg.heads}) for attention fusion"
    if not 0.0 <= cfg.select_tolerance < 1.0:
        return "select_tolerance must be in [0, 1)"
    if not 0.0 <= cfg.modality_dropout < 1.0:
        return "modality_dropout must be in [0, 1)"
    return None


def _matryoshka(cfg: TrainConfig) -> str | None:
    dims = cfg.matryoshka_dims
    if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        return f"matryoshka_dims must be a list of integers, got {dims!r}"
    if cfg.matryoshka_weight < 0:
        return f"matryoshka_weight must be >= 0, got {cfg.matryoshka_weight}"
    if dims != sorted(set(dims)) or any(not 1 <= d < cfg.dim for d in dims):
        return (f"matryoshka_dims {dims} must be ascending, unique and each in [1, dim = {cfg.dim}) "
                "(the full dim is always trained; [] or --matryoshka-dims '' turns the prefixes off)")  # fmt: skip
    return None


def _video(cfg: TrainConfig) -> str | None:
    if not 0 < cfg.video_fps <= 30 or not 1 <= cfg.video_max_frames <= 64:
        return "video_fps must be in (0, 30] and video_max_frames in [1, 64]"
    if not 0 <= cfg.video_overlap_s < cfg.video_segment_s:
        return f"video_overlap_s ({cfg.video_overlap_s}) must be >= 0 and below video_segment_s ({cfg.video_segment_s})"
    return None


def _text_encoder(cfg: TrainConfig) -> str | None:
    return text_encoder_problem(cfg.text_encoder) if cfg.text_encoder else None


def _audio_encoder(cfg: TrainConfig) -> str | None:
    return audio_encoder_problem(cfg.audio_encoder) if cfg.audio_encoder else None


def _image_encoder(cfg: TrainConfig) -> str | None:
    if not cfg.image_encoder:
        return "image_feature 'cls' needs a Hugging Face image_encoder" if cfg.image_feature == "cls" else None
    if cfg.image_feature == "spatial":
        return "image_feature 'spatial' is the packaged EfficientNet's read-out; use pooled or cls with image_encoder"
    return image_encoder_problem(cfg.image_encoder)


def _device(cfg: TrainConfig) -> str | None:
    from training.device import device_problem

    return device_problem(cfg.device)


def card_notes_path(notes: str) -> Path:
    """card_notes as a path: as given, else in training/configs/ (where tridigits.toml's notes live)."""
    return Path(notes) if Path(notes).is_file() else CONFIG_DIR / notes


def _card_notes(cfg: TrainConfig) -> str | None:
    if cfg.card_notes and not card_notes_path(cfg.card_notes).is_file():
        return f"card_notes: {cfg.card_notes} is not a file (nor one in {CONFIG_DIR})"
    return None


_CHECKS = (
    _one_of("fusion", FUSIONS), _matryoshka, _one_of("image_feature", ("pooled", "spatial", "cls")),
    _one_of("text_pooling", TEXT_POOLING), _text_encoder, _image_encoder, _audio_encoder,
    _one_of("contrastive", ("item", "label")), _one_of("quantize", ("", "int8")), _name_and_version, _sizes,
    _card_notes, _one_of("video_pooling", ("attention", "mean")), _video, _device,
    _one_of("precision", ("auto", "fp32", "bf16", "fp16")),
)  # fmt: skip


def _field_types() -> dict[str, type]:
    defaults = TrainConfig()
    return {f.name: type(getattr(defaults, f.name)) for f in fields(TrainConfig)}


def _config_path(path: Path | str) -> Path:
    """The file itself, or a packaged config by file name (`tridigits.toml`) or bare name (`tridigits`)."""
    path = Path(path)
    for candidate in (path, CONFIG_DIR / path, CONFIG_DIR / f"{path}.toml"):
        if candidate.is_file():
            return candidate
    packaged = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
    raise ConfigError(f"config file {path} not found (packaged configs: {packaged})")


def load_toml(path: Path | str) -> dict:
    path = _config_path(path)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: not a readable TOML file: {error}") from None
    unknown = sorted(set(values) - set(_field_types()))
    if unknown:
        raise ConfigError(f"{path}: unknown config keys {unknown} (known: the fields of training/config.py)")
    types = _field_types()
    values = {k: str(v) if types[k] is str and _fits(v, int) else v for k, v in values.items()}  # version = 2
    wrong = [f"{k} = {v!r} (expected {types[k].__name__})" for k, v in values.items() if not _fits(v, types[k])]
    if wrong:
        raise ConfigError(f"{path}: wrong value types: {', '.join(wrong)}")
    return values


def _fits(value: object, kind: type) -> bool:
    if kind is list:  # matryoshka_dims: integers (their range is TrainConfig's check)
        return isinstance(value, list) and all(_fits(v, int) for v in value)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _parse_dims(text: str) -> list[int]:
    """`--matryoshka-dims 64,128` → [64, 128]; an empty string → [] (off)."""
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 64,128, got {text!r}") from None


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config FILE` plus one `--field-name VALUE` flag per TrainConfig field (default: not given)."""
    parser.add_argument("--config", default="default.toml", help="TOML file (a name in training/configs/ works)")
    group = parser.add_argument_group("config overrides")
    for name, kind in _field_types().items():
        flag = "--" + name.replace("_", "-")
        if kind is bool:  # `--resume` alone means true; `--progress false` still works
            group.add_argument(flag, dest=name, type=_parse_bool, nargs="?", const=True, default=None)
        elif kind is list:
            group.add_argument(flag, dest=name, type=_parse_dims, default=None, metavar="D1,D2")
        else:
            group.add_argument(flag, dest=name, type=kind, default=None)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = load_toml(args.config)
    values |= {name: getattr(args, name) for name in _field_types() if getattr(args, name, None) is not None}
    return TrainConfig(**values)


def load_config(path: Path | str = "default.toml", **overrides) -> TrainConfig:
    return TrainConfig(**(load_toml(path) | overrides))
