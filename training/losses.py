"""Training losses: fused cross-entropy + auxiliary per-modality cross-entropy + symmetric InfoNCE.

The auxiliary heads keep every single-modality embedding discriminative on its own (so a request with one
modality still classifies well); InfoNCE pulls the embeddings of the same item together across modalities,
which is what makes the joint space usable for cross-modal retrieval. Each term only looks at the items
where its modalities are present (after modality dropout).
"""

from __future__ import annotations

from itertools import combinations

import torch
import torch.nn.functional as F

from training.model.fused import FusedOutput


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP loss) for paired rows: a[i] ↔ b[i] are positives, other rows negatives.

    a, b: [N,D] unit-norm embeddings of N items → scalar. N must be >= 2 (one pair has no negatives).
    """
    logits = a @ b.t() / temperature  # [N,N]; the diagonal holds the positive pairs
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def pairwise_info_nce(
    embeddings: dict[str, torch.Tensor], present: torch.Tensor, modalities: list[str], temperature: float
) -> torch.Tensor | None:
    """Mean InfoNCE over modality pairs, each computed on the items where both are present.

    embeddings: {m: [B,D]}, present: [B,M] (column order = modalities). None when no pair has 2+ items.
    """
    terms = []
    for (i, a), (j, b) in combinations(enumerate(modalities), 2):
        both = (present[:, i] > 0.5) & (present[:, j] > 0.5)  # [B] bool
        if int(both.sum()) >= 2:
            terms.append(info_nce(embeddings[a][both], embeddings[b][both], temperature))
    return torch.stack(terms).mean() if terms else None


def auxiliary_ce(
    aux_logits: dict[str, torch.Tensor], present: torch.Tensor, labels: torch.Tensor, modalities: list[str]
) -> torch.Tensor | None:
    """Mean over modalities of the cross-entropy of that modality's own head, on items that have it."""
    terms = []
    for i, m in enumerate(modalities):
        rows = present[:, i] > 0.5  # [B] bool
        if bool(rows.any()):
            terms.append(F.cross_entropy(aux_logits[m][rows], labels[rows]))
    return torch.stack(terms).mean() if terms else None


def total_loss(
    out: FusedOutput, present: torch.Tensor, labels: torch.Tensor, modalities: list[str], cfg
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum (weights from TrainConfig: w_fused, w_aux, w_nce, temperature) and its parts."""
    parts = {"fused": F.cross_entropy(out.logits, labels)}
    aux = auxiliary_ce(out.aux_logits, present, labels, modalities)
    if aux is not None:
        parts["aux"] = aux
    nce = pairwise_info_nce(out.embeddings, present, modalities, cfg.temperature)
    if nce is not None:
        parts["nce"] = nce
    weights = {"fused": cfg.w_fused, "aux": cfg.w_aux, "nce": cfg.w_nce}
    total = sum(weights[name] * value for name, value in parts.items())
    return total, {name: float(value.detach()) for name, value in parts.items()}
