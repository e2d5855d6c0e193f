"""Temporal pooling: a segment's frame embeddings → its video_frames embedding (what video_pool.onnx computes).

frames [B,K,D] (each frame through the image encoder: projected, unit norm), mask [B,K] (1 = a real frame)
→ [B,D] unit norm. `attention`: a softmax over the segment's frames of a learned score, then the weighted sum;
`mean`: the masked mean. Padded frames are zeroed with torch.where before anything reads them, so whatever the
server pads with cannot reach the output; a segment without frames pools to zeros (fusion masks its slot).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

POOLINGS = ("attention", "mean")
_MASKED = -1e9  # as fusion's: exp(-1e9 - max) is exactly 0 in float32, yet finite
# fusion's slots that come from another modality's encoder: a video's frames and its sound track
SLOT_ENCODER = {"video_frames": "image", "video_audio": "audio"}


def encoder_of(slot: str) -> str:
    """The encoder (and projection) a fusion slot's embedding comes from."""
    return SLOT_ENCODER.get(slot, slot)


class TemporalPool(nn.Module):
    def __init__(self, dim: int, pooling: str = "attention"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.pooling = pooling
        # zero-initialised: training starts from the mean and learns which frames to trust
        self.score = nn.Linear(dim, 1) if pooling == "attention" else None
        if self.score is not None:
            nn.init.zeros_(self.score.weight)
            nn.init.zeros_(self.score.bias)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = (mask > 0.5).unsqueeze(-1)  # [B,K,1] bool
        frames = torch.where(keep, frames, torch.zeros_like(frames))  # [B,K,D]
        if self.score is None:
            weights = keep.to(frames.dtype) / keep.sum(dim=1, keepdim=True).clamp(min=1).to(frames.dtype)
        else:
            scores = torch.where(keep, self.score(frames), torch.full_like(frames[..., :1], _MASKED))  # [B,K,1]
            weights = torch.softmax(scores, dim=1) * keep.to(frames.dtype)  # [B,K,1]; all-padded rows → 0
        return F.normalize((weights * frames).sum(dim=1), dim=-1)  # [B,D]


def frame_mask(frames: torch.Tensor) -> torch.Tensor:
    """[B,K,F] backbone features, zero rows = padding → [B,K] f32 (a real frame's features are never all zero)."""
    return (frames.abs().amax(dim=-1) > 0).to(frames.dtype)
