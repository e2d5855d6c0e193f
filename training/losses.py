"""Training losses: fused cross-entropy + auxiliary per-modality cross-entropy + a contrastive term.

The auxiliary heads keep every single-modality embedding discriminative on its own (so a request with one
modality still classifies well). The contrastive term aligns the joint space across modalities, in one of
two ways (TrainConfig.contrastive):
- "item": symmetric InfoNCE (CLIP) between the modalities of one row — right when a row is a real pair
  (a photo and its caption, a clip and its transcript): the row's other modality is the only positive.
- "label": supervised contrastive (Khosla et al., 2020) over every present (item, modality) embedding of
  the batch: all others with the anchor's label are positives, whatever their modality — right when items
  share nothing across modalities but the label (tridigits). Item-level InfoNCE would push those
  same-label items of other rows apart as negatives.
Each term only looks at the items where its modalities are present.

The fused embedding is one more set of points (label) or is paired with each modality (item): zero-shot and
rerank score it against text-slot label embeddings, so it must live in the same space. With
TrainConfig.matryoshka_dims the contrastive term is computed at the full dim and again at each prefix (truncated,
re-normalised) and the terms are averaged: sentence-transformers' MatryoshkaLoss with equal weights 1 / (k + 1)
rather than its sum, so w_nce keeps its meaning next to the cross-entropy terms (docs/training.md "Matryoshka").
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


def label_contrastive(
    embeddings: dict[str, torch.Tensor],
    present: torch.Tensor,
    labels: torch.Tensor,
    modalities: list[str],
    temperature: float,
) -> torch.Tensor | None:
    """Supervised contrastive loss over the batch's present embeddings of every modality.

    embeddings: {m: [B,D]} unit norm, present: [B,M], labels: [B] → scalar; None when no point has a positive.
    """
    rows = [present[:, i] > 0.5 for i in range(len(modalities))]
    points = torch.cat([embeddings[m][r] for m, r in zip(modalities, rows, strict=True)])  # [P,D]
    point_labels = torch.cat([labels[r] for r in rows])  # [P]
    itself = torch.eye(len(point_labels), dtype=torch.bool, device=points.device)
    logits = (points @ points.t() / temperature).masked_fill(itself, -1e9)  # [P,P], no self-similarity
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (point_labels[:, None] == point_labels[None, :]) & ~itself  # [P,P]
    count = positives.sum(dim=1)
    anchors = count > 0
    if not bool(anchors.any()):
        return None
    return (-(log_prob * positives).sum(dim=1)[anchors] / count[anchors]).mean()


def prefix(embeddings: torch.Tensor, dim: int) -> torch.Tensor:
    """[N,D] → the first `dim` dimensions, re-normalised [N,dim] (service/embedding_types.truncate in torch)."""
    return embeddings if dim >= embeddings.shape[-1] else F.normalize(embeddings[:, :dim], dim=-1)


def joint_contrastive(
    out: FusedOutput, present: torch.Tensor, labels: torch.Tensor, modalities: list[str], cfg
) -> torch.Tensor | None:
    """The contrastive term (cfg.contrastive) over every modality and (cfg.contrastive_fused) the fused embedding:
    the weighted mean over the full dim (weight 1) and each of cfg.matryoshka_dims (cfg.matryoshka_weight each).
    present: [B,M] → scalar, or None when no dim has a term."""
    names = [*modalities, "fused"] if cfg.contrastive_fused else list(modalities)
    mask = torch.cat([present, torch.ones_like(present[:, :1])], dim=1)[:, : len(names)]  # fused: on every row
    points = dict(out.embeddings, fused=out.fused)
    terms, weights = [], []
    for dim, weight in [(out.fused.shape[-1], 1.0), *((d, cfg.matryoshka_weight) for d in cfg.matryoshka_dims)]:
        cut = {name: prefix(points[name], dim) for name in names}
        if cfg.contrastive == "label":
            term = label_contrastive(cut, mask, labels, names, cfg.temperature)
        else:
            term = pairwise_info_nce(cut, mask, names, cfg.temperature)
        if term is not None and weight > 0:
            terms.append(term)
            weights.append(weight)
    if not terms:
        return None
    return (torch.stack(terms) * torch.tensor(weights, device=terms[0].device)).sum() / sum(weights)


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
    """Weighted sum (TrainConfig: w_fused, w_aux, w_nce, contrastive, temperature, matryoshka_dims), its parts."""
    parts = {"fused": F.cross_entropy(out.logits, labels)}
    aux = auxiliary_ce(out.aux_logits, present, labels, modalities)
    if aux is not None:
        parts["aux"] = aux
    nce = joint_contrastive(out, present, labels, modalities, cfg)
    if nce is not None:
        parts["nce"] = nce
    weights = {"fused": cfg.w_fused, "aux": cfg.w_aux, "nce": cfg.w_nce}
    total = sum(weights[name] * value for name, value in parts.items())
    return total, {name: float(value.detach()) for name, value in parts.items()}
