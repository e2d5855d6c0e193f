"""Whisper's audio encoder as a plain torch module that takes any length and a frame mask.

transformers' WhisperEncoder insists on exactly 3000 frames (30 s) and ignores masks, so a 1 s clip costs
as much as 30 s and padding changes the result. This module has the same weights and parameter names
(its state dict loads into transformers' WhisperEncoder and back), but:
  * accepts T <= 2 * n_ctx frames and only uses positions[:ceil(T/2)];
  * takes frame_mask [B,T] (1 real, 0 pad; real frames first, as the server pads at the end): padded
    frames and their conv1 outputs are zeroed so the convs see exactly what they would see at the end of
    the clip alone, the mask is a key-padding mask in every attention layer, and pooling is a masked mean.
    An item's output is therefore the same alone or padded inside a batch (batch invariance, docs/bundle-format.md),
    up to float rounding.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.model.ct2_reader import (
    WhisperDims,
    packaged_whisper_path,
    read_ct2,
    whisper_dims,
    whisper_encoder_state_dict,
)

TINY_EN = WhisperDims(n_mels=80, d_model=384, n_layers=4, n_heads=6, n_ctx=1500, ffn_dim=1536)
# Added to masked attention scores: exp(-1e9) is exactly 0 in float32, yet finite so that a (degenerate)
# all-padding row gives a uniform softmax instead of NaN.
_MASKED = -1e9


class SelfAttention(nn.Module):
    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, d // n_heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d, bias=False)  # Whisper has no key bias (softmax would cancel it)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, T, _ = t.shape
        return t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # [B,T,d] → [B,h,T,hd]

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape  # key_bias: [B,1,1,T] additive, 0 for real keys and _MASKED for padding
        q, k, v = self._heads(self.q_proj(x)), self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
        # softmax(q k^T / sqrt(hd) + key_bias) v; SDPA picks a fused CPU kernel, exports as plain ops
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias)  # [B,h,T,hd]
        return self.out_proj(y.transpose(1, 2).reshape(B, T, d))


class EncoderLayer(nn.Module):
    """Pre-LN block, names as in transformers' WhisperEncoderLayer."""

    def __init__(self, d: int, n_heads: int, ffn_dim: int):
        super().__init__()
        self.self_attn = SelfAttention(d, n_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), key_bias)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class WhisperAudioEncoder(nn.Module):
    def __init__(self, dims: WhisperDims = TINY_EN):
        super().__init__()
        self.dims = dims
        d = dims.d_model
        self.conv1 = nn.Conv1d(dims.n_mels, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(dims.n_ctx, d)  # sinusoids in Whisper, stored as a table
        self.layers = nn.ModuleList(EncoderLayer(d, dims.n_heads, dims.ffn_dim) for _ in range(dims.n_layers))
        self.layer_norm = nn.LayerNorm(d)

    @property
    def out_dim(self) -> int:
        return self.dims.d_model

    def hidden_states(
        self, input_features: torch.Tensor, frame_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """input_features [B,n_mels,T], frame_mask [B,T] → hidden [B,T',d], mask [B,T']; T' = ceil(T/2)."""
        n_frames = input_features.shape[-1]
        max_frames = 2 * self.dims.n_ctx  # conv2 halves T; only n_ctx positions exist
        if not torch.jit.is_tracing() and n_frames > max_frames:
            raise ValueError(f"at most {max_frames} frames, got {n_frames}")
        if frame_mask is None:
            frame_mask = input_features.new_ones(input_features.shape[0], n_frames)
        m = frame_mask.to(input_features.dtype).unsqueeze(1)  # [B,1,T]
        # Zero padded frames and conv1's outputs there: conv1/conv2 (k=3) read one step past the last real
        # frame, and alone that step is the conv's zero padding. Then outputs do not depend on batch-mates.
        x = F.gelu(self.conv1(input_features * m)) * m  # [B,d,T]
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # [B,T',d]
        # conv2 (stride 2, pad 1) output j' is centred on input 2j': it is real iff frame 2j' is real
        mask = frame_mask[:, ::2].to(x.dtype)  # [B,T']
        x = x + self.embed_positions.weight[: x.shape[1]]
        key_bias = ((1.0 - mask) * _MASKED)[:, None, None, :]  # [B,1,1,T']
        for layer in self.layers:
            x = layer(x, key_bias)
        return self.layer_norm(x), mask

    def forward(self, input_features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Masked mean over real positions: [B,n_mels,T], [B,T] → [B,d]."""
        h, mask = self.hidden_states(input_features, frame_mask)
        w = mask.unsqueeze(-1)  # [B,T',1]
        return (h * w).sum(1) / w.sum(1).clamp(min=1.0)


def load_whisper_encoder(path: str | Path | None = None) -> WhisperAudioEncoder:
    """Whisper encoder with the weights of a CTranslate2 model.bin (default: the packaged tiny.en)."""
    ct2 = read_ct2(path or packaged_whisper_path(), float32=True)
    module = WhisperAudioEncoder(whisper_dims(ct2))
    state, missing, extra = whisper_encoder_state_dict(ct2, list(module.state_dict()))
    if missing or extra:
        raise ValueError(f"CTranslate2 → Whisper mapping incomplete: missing={missing} extra={extra}")
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()}, strict=True)
    return module.eval()


def load_hf_whisper_encoder(directory: str | Path) -> WhisperAudioEncoder:
    """The encoder of a Hugging Face Whisper directory (any size), in this module (any length, a frame mask)."""
    from transformers import WhisperConfig, WhisperModel

    config = WhisperConfig.from_pretrained(str(directory), local_files_only=True)
    dims = WhisperDims(n_mels=config.num_mel_bins, d_model=config.d_model, n_layers=config.encoder_layers,
                       n_heads=config.encoder_attention_heads, n_ctx=config.max_source_positions,
                       ffn_dim=config.encoder_ffn_dim)  # fmt: skip
    encoder = WhisperModel.from_pretrained(str(directory), local_files_only=True).get_encoder()
    module = WhisperAudioEncoder(dims)
    module.load_state_dict(encoder.state_dict(), strict=True)  # the same parameter names (module docstring)
    return module.eval()
