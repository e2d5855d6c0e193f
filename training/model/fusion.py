"""Fusion modules: per-modality embeddings in the joint space → class logits and one fused embedding.

One signature for all four: forward(embeddings {modality: [B,D]}, present [B,M] f32) → (logits [B,C],
fused [B,D] L2-normalised), modalities in the module's fixed order (the server's fusion input order).
Any non-empty subset of modalities works per row. Absent embeddings are replaced by zeros with
`torch.where` before anything reads them, so whatever the server puts there (zeros, garbage, even NaN)
cannot reach the outputs. Every module is traceable by the TorchScript ONNX exporter with a dynamic batch
axis: no data-dependent Python control flow, masks are arithmetic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Added to masked scores: exp(-1e9 - max) is exactly 0 in float32, yet finite (no NaN in exported graphs).
_MASKED = -1e9


def _stack_present(embeddings: dict[str, torch.Tensor], present: torch.Tensor, modalities: list[str]):
    """→ E [B,M,D] with absent rows exactly zero, mask [B,M,1] (1 = present)."""
    stacked = torch.stack([embeddings[m] for m in modalities], dim=1)  # [B,M,D]
    mask = (present > 0.5).unsqueeze(-1)  # [B,M,1] bool
    return torch.where(mask, stacked, torch.zeros_like(stacked)), mask.to(stacked.dtype)


def _masked_scores(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over modalities of `scores` [B,M,1] restricted to mask [B,M,1]."""
    scores = torch.where(mask > 0, scores, torch.full_like(scores, _MASKED))
    return torch.softmax(scores, dim=1)


class Fusion(nn.Module):
    """Shared constructor arguments; subclasses implement forward."""

    strategy = "base"

    def __init__(self, modalities: list[str], dim: int, n_classes: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        if not modalities:
            raise ValueError("fusion needs at least one modality")
        self.modalities, self.dim, self.n_classes = list(modalities), dim, n_classes

    def head(self, dim: int, hidden: int, dropout: float) -> nn.Sequential:
        """Pre-normalised classifier: fused representation [B,dim] → logits [B,C]."""
        return nn.Sequential(nn.LayerNorm(dim), nn.Dropout(dropout), nn.Linear(dim, self.n_classes))


class ConcatFusion(Fusion):
    """Feature-level: MLP over [e_image | e_text | e_audio | present] with absent slots zeroed."""

    strategy = "concat"

    def __init__(self, modalities, dim, n_classes, hidden=256, dropout=0.1, **_):
        super().__init__(modalities, dim, n_classes, hidden, dropout)
        m = len(self.modalities)
        # `present` is an input too: a zero slot alone does not tell "absent" from a tiny embedding
        self.mlp = nn.Sequential(nn.Linear(m * dim + m, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.classifier = self.head(dim, hidden, dropout)

    def forward(self, embeddings: dict[str, torch.Tensor], present: torch.Tensor):
        stacked, mask = _stack_present(embeddings, present, self.modalities)  # [B,M,D], [B,M,1]
        x = torch.cat([stacked.flatten(1), mask.flatten(1)], dim=1)  # [B,M*D+M]
        h = self.mlp(x)  # [B,D]
        return self.classifier(h), F.normalize(h, dim=-1)


class GatedFusion(Fusion):
    """Learned per-modality gates: softmax over present modalities of g_m(e_m), weighted sum of v_m(e_m)."""

    strategy = "gated"

    def __init__(self, modalities, dim, n_classes, hidden=256, dropout=0.1, **_):
        super().__init__(modalities, dim, n_classes, hidden, dropout)
        self.gates = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, hidden // 4), nn.Tanh(), nn.Linear(hidden // 4, 1)) for _ in self.modalities
        )
        self.values = nn.ModuleList(nn.Linear(dim, dim) for _ in self.modalities)
        self.classifier = self.head(dim, hidden, dropout)

    def forward(self, embeddings: dict[str, torch.Tensor], present: torch.Tensor):
        stacked, mask = _stack_present(embeddings, present, self.modalities)  # [B,M,D], [B,M,1]
        scores = torch.stack([g(stacked[:, i]) for i, g in enumerate(self.gates)], dim=1)  # [B,M,1]
        values = torch.stack([v(stacked[:, i]) for i, v in enumerate(self.values)], dim=1)  # [B,M,D]
        weights = _masked_scores(scores, mask)  # [B,M,1], 0 on absent, rows sum to 1
        h = (weights * values).sum(dim=1)  # [B,D]
        return self.classifier(h), F.normalize(h, dim=-1)


class _Block(nn.Module):
    """Pre-LN transformer block over modality tokens with an additive key-padding bias."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        B, M, D = x.shape  # key_bias [B,1,1,M]: 0 for present keys, _MASKED for absent ones
        q, k, v = self.qkv(self.norm1(x)).view(B, M, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / (D // self.heads) ** 0.5 + key_bias  # [B,h,M,M]
        y = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, M, D)  # [B,M,D]
        x = x + self.drop(self.out(y))
        return x + self.drop(self.ffn(self.norm2(x)))


class AttentionFusion(Fusion):
    """A small transformer over modality tokens (+ learned modality-type embeddings); absent tokens are
    masked as keys and left out of the pooled output (masked mean)."""

    strategy = "attention"

    def __init__(self, modalities, dim, n_classes, hidden=256, dropout=0.1, heads=4, layers=1, **_):
        super().__init__(modalities, dim, n_classes, hidden, dropout)
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.type_embedding = nn.Parameter(torch.randn(len(self.modalities), dim) * 0.02)  # [M,D]
        self.blocks = nn.ModuleList(_Block(dim, heads, hidden, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.classifier = self.head(dim, hidden, dropout)

    def forward(self, embeddings: dict[str, torch.Tensor], present: torch.Tensor):
        stacked, mask = _stack_present(embeddings, present, self.modalities)  # [B,M,D], [B,M,1]
        x = stacked + self.type_embedding  # [B,M,D]
        key_bias = ((1.0 - mask) * _MASKED).transpose(1, 2).unsqueeze(1)  # [B,1,1,M]
        for block in self.blocks:
            x = block(x, key_bias)
        x = self.norm(x) * mask  # [B,M,D]; absent tokens (which attended to present ones) drop out here
        h = x.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # masked mean [B,D]
        return self.classifier(h), F.normalize(h, dim=-1)


class LateFusion(Fusion):
    """Decision-level: each modality's own classifier; logits averaged over present modalities."""

    strategy = "late"

    def __init__(self, modalities, dim, n_classes, hidden=256, dropout=0.1, **_):
        super().__init__(modalities, dim, n_classes, hidden, dropout)
        self.classifiers = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes))
            for _ in self.modalities
        )

    def forward(self, embeddings: dict[str, torch.Tensor], present: torch.Tensor):
        stacked, mask = _stack_present(embeddings, present, self.modalities)  # [B,M,D], [B,M,1]
        logits = torch.stack([c(stacked[:, i]) for i, c in enumerate(self.classifiers)], dim=1)  # [B,M,C]
        count = mask.sum(dim=1).clamp(min=1.0)  # [B,1]
        averaged = (logits * mask).sum(dim=1) / count  # [B,C]; absent logits are multiplied by exactly 0
        return averaged, F.normalize(stacked.sum(dim=1), dim=-1)  # mean of present embeddings, normalised


FUSIONS: dict[str, type[Fusion]] = {
    cls.strategy: cls for cls in (ConcatFusion, GatedFusion, AttentionFusion, LateFusion)
}


def build_fusion(strategy: str, modalities: list[str], dim: int, n_classes: int, **options) -> Fusion:
    if strategy not in FUSIONS:
        raise ValueError(f"unknown fusion {strategy!r}; choose one of {', '.join(FUSIONS)}")
    return FUSIONS[strategy](modalities, dim, n_classes, **options)
