"""Label-aware contrastive alignment vs item-level InfoNCE, on data whose items share nothing across
modalities but the label (plus a per-item nuisance both modalities carry, like a recording session)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.losses import info_nce, label_contrastive

MODALITIES = ["image", "audio"]


def test_label_loss_prefers_label_alignment_and_item_infonce_prefers_item_alignment():
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    present = torch.ones(6, 2)
    by_label = F.normalize(torch.eye(8)[labels], dim=-1)  # every item of a label at one point, both modalities
    by_item = torch.eye(8)[:6]  # every item at its own point, shared by its two modalities
    label_aligned = {"image": by_label, "audio": by_label}
    item_aligned = {"image": by_item, "audio": by_item}
    sup = {k: label_contrastive(e, present, labels, MODALITIES, 0.1) for k, e in
           (("label", label_aligned), ("item", item_aligned))}  # fmt: skip
    nce = {k: info_nce(e["image"], e["audio"], 0.1) for k, e in (("label", label_aligned), ("item", item_aligned))}
    assert sup["label"] < sup["item"]  # the supervised loss rewards putting same-label items together
    assert nce["item"] < nce["label"]  # InfoNCE rewards the opposite: same-label items of other rows are negatives


def test_label_loss_only_counts_present_embeddings():
    labels = torch.tensor([0, 1, 0])
    e = {"image": F.normalize(torch.randn(3, 4), dim=-1), "audio": F.normalize(torch.randn(3, 4), dim=-1)}
    present = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    base = label_contrastive(e, present, labels, MODALITIES, 0.1)
    e["image"] = e["image"].clone()
    e["image"][2] = torch.nan  # absent: must not be read
    assert torch.isfinite(label_contrastive(e, present, labels, MODALITIES, 0.1))
    assert torch.allclose(base, label_contrastive(e, present, labels, MODALITIES, 0.1))
    assert label_contrastive(e, torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]), labels, MODALITIES, 0.1) is None


def _tiny(n: int, seed: int):
    """Two modalities that share nothing but the label: label signal + each modality's own noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    signal = torch.eye(4)[labels].repeat(1, 4)  # [n,16]
    image = torch.cat([signal, torch.zeros(n, 16)], 1) + 0.5 * torch.randn(n, 32, generator=g)
    audio = torch.cat([signal, torch.zeros(n, 16)], 1) + 0.5 * torch.randn(n, 32, generator=g)
    return image, audio, labels


def _train(loss_name: str) -> tuple[float, float]:
    """Linear projections trained with one loss → on held-out items: (same-label audio→image recall@1,
    mean cosine of same-label cross-modal pairs minus that of different-label pairs)."""
    torch.manual_seed(0)
    proj = torch.nn.ModuleDict({m: torch.nn.Linear(32, 8) for m in MODALITIES})
    opt = torch.optim.Adam(proj.parameters(), lr=1e-2)
    image, audio, labels = _tiny(64, seed=1)
    for _ in range(200):
        e = {"image": F.normalize(proj["image"](image), dim=-1), "audio": F.normalize(proj["audio"](audio), dim=-1)}
        if loss_name == "label":
            loss = label_contrastive(e, torch.ones(64, 2), labels, MODALITIES, 0.1)
        else:
            loss = info_nce(e["image"], e["audio"], 0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    image, audio, labels = _tiny(200, seed=2)  # new items
    with torch.no_grad():
        sim = F.normalize(proj["audio"](audio), dim=-1) @ F.normalize(proj["image"](image), dim=-1).T
    same = labels[:, None] == labels[None, :]
    return float((labels[sim.argmax(1)] == labels).float().mean()), float(sim[same].mean() - sim[~same].mean())


def test_item_infonce_misaligns_where_label_alignment_does_not():
    (label_recall, label_gap), (item_recall, item_gap) = _train("label"), _train("item")
    assert label_recall >= 0.75 and label_recall > item_recall + 0.15
    assert label_gap > 2 * item_gap  # InfoNCE spread same-label items apart: their cross-modal cosine stays low
