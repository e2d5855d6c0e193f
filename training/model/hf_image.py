"""Hugging Face vision encoders as image backbones (docs/training.md, "Bring your encoders")."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from training.encoders import IMAGE_POOLING
from training.model.base import Backbone, block_list


class HFImageBackbone(Backbone):
    """A Hugging Face vision encoder (ViT, ConvNeXt, DINOv2, CLIP's vision tower) → its pooled output, or its
    first token ("cls") → [B,hidden]. Input: the model's own processor's pixels (training/encoders.py)."""

    modality = "image"

    def __init__(self, model_dir: str | Path, pooling: str = "pooled"):
        super().__init__()
        from transformers import AutoConfig, AutoModel, CLIPVisionModel

        config = AutoConfig.from_pretrained(str(model_dir), local_files_only=True)
        if pooling not in IMAGE_POOLING or (pooling == "cls" and config.model_type == "convnext"):
            allowed = "'pooled'" if config.model_type == "convnext" else "'pooled' or 'cls'"
            raise ValueError(f"{config.model_type} image encoders take image_feature {allowed}, got {pooling!r}")
        loader = CLIPVisionModel if config.model_type == "clip" else AutoModel
        extra = {} if config.model_type == "convnext" else {"attn_implementation": "eager"}  # no attention there
        self.net = loader.from_pretrained(str(model_dir), local_files_only=True, **extra)
        vision = getattr(self.net.config, "vision_config", self.net.config)
        self.pooling, self.out_dim = pooling, getattr(vision, "hidden_size", None) or vision.hidden_sizes[-1]
        self.finetune_last(0)

    def blocks(self) -> list[nn.Module]:
        owner = getattr(self.net, "vision_model", self.net)  # CLIP: the vision tower
        return block_list(owner, ("encoder",), ("layer", "layers", "stages"))  # ViT / DINOv2, CLIP, ConvNeXt

    def tail(self) -> list[nn.Module]:
        """The final norm and pooler after the blocks (ViT, DINOv2, ConvNeXt: layernorm; CLIP: post_layernorm)."""
        owner = getattr(self.net, "vision_model", self.net)
        found = [getattr(owner, name, None) for name in ("layernorm", "post_layernorm", "pooler")]
        return [module for module in found if isinstance(module, nn.Module)]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # [B,3,S,S] f32
        out = self.net(pixel_values=pixel_values)
        return out.pooler_output if self.pooling == "pooled" else out.last_hidden_state[:, 0]  # [B,hidden]
