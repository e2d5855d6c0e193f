"""A waveform encoder (wav2vec2, HuBERT, WavLM from a Hugging Face directory) that reads the raw samples with
a sample mask, so that a clip's output is the same alone or padded in a batch (docs/bundle-format.md).

transformers' models are only that for their "layer" feature-extractor variants: the "group" variant (every
base model) normalises its first conv's output over the whole padded length, so padding changes the answer,
and their feature extractors send no mask at all. Here the feature encoder runs conv by conv with the clip's
length carried along, the group norm takes its statistics over the clip's own frames only (what the model
computes for the clip alone), and the transformer gets the frame mask. Then a masked mean over frames.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from training.model.base import Backbone, block_list


def masked_channel_norm(x: torch.Tensor, valid: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm with one group per channel, statistics over the valid frames only.
    x [B,C,T], valid [B,1,T] (1 real, 0 pad) → [B,C,T]."""
    count = valid.sum(-1, keepdim=True).clamp(min=1.0)  # [B,1,1]
    mean = (x * valid).sum(-1, keepdim=True) / count  # [B,C,1]
    variance = (((x - mean) * valid) ** 2).sum(-1, keepdim=True) / count
    y = (x - mean) / torch.sqrt(variance + norm.eps)
    return y * norm.weight[:, None] + norm.bias[:, None]


def frames_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """lengths [B] → [B,frames] bool, True for each item's first `length` frames."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


class WaveformBackbone(Backbone):
    """input_features [B,1,T] samples (the server's waveform front end), frame_mask [B,T] → [B,hidden]."""

    modality = "audio"

    def __init__(self, directory: str | Path):
        super().__init__()
        from transformers import AutoModel

        self.model = AutoModel.from_pretrained(str(directory), local_files_only=True, attn_implementation="eager")
        config = self.model.config
        self.kernels, self.strides = tuple(config.conv_kernel), tuple(config.conv_stride)
        self.stable_layer_norm, self.out_dim = bool(config.do_stable_layer_norm), config.hidden_size
        self.finetune_last(0)

    def blocks(self) -> list[nn.Module]:
        return block_list(self.model, ("encoder",), ("layers",))

    def tail(self) -> list[nn.Module]:  # the stable-layer-norm encoders normalise after their last layer
        return [self.model.encoder.layer_norm] if self.stable_layer_norm else []

    def conv_features(self, samples: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """samples [B,1,T], lengths [B] → features [B,C,T'], frame lengths [B]: the feature encoder, conv by conv.
        An output frame reads only its own clip's samples (no conv pads), so only the group norm needs the mask."""
        x, layers = samples, self.model.feature_extractor.conv_layers
        for layer, kernel, stride in zip(layers, self.kernels, self.strides, strict=True):
            x = layer.conv(x)
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
            norm = getattr(layer, "layer_norm", None)
            if isinstance(norm, nn.GroupNorm):
                x = masked_channel_norm(x, frames_mask(lengths, x.shape[-1])[:, None].to(x.dtype), norm)
            elif norm is not None:  # LayerNorm over channels, frame by frame
                x = norm(x.transpose(-2, -1)).transpose(-2, -1)
            x = layer.activation(x)
        return x, lengths

    def forward(self, input_features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        features, lengths = self.conv_features(input_features, frame_mask.sum(-1).round().long())  # [B,C,T']
        mask = frames_mask(lengths, features.shape[-1])  # [B,T']
        hidden = self.model.feature_projection(features.transpose(1, 2))
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden  # wav2vec2, WavLM: (hidden, normed features)
        hidden = self.model.encoder(hidden * mask[..., None], attention_mask=mask).last_hidden_state  # [B,T',H]
        w = mask[..., None].to(hidden.dtype)
        return (hidden * w).sum(1) / w.sum(1).clamp(min=1.0)  # masked mean over real frames
