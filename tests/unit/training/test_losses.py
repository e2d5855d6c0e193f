"""Losses: InfoNCE is symmetric with known values, pairs only use co-present items, weights combine."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from training.losses import auxiliary_ce, info_nce, label_contrastive, pairwise_info_nce, total_loss
from training.model.fused import FusedOutput

MODALITIES = ["image", "text", "audio"]


def unit(rows: int, dim: int = 8, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_info_nce_is_symmetric():
    a, b = unit(6, seed=1), unit(6, seed=2)
    assert torch.allclose(info_nce(a, b, 0.1), info_nce(b, a, 0.1), atol=1e-6)


def test_info_nce_known_values():
    # orthonormal pairs: positives have similarity 1, negatives 0 → each row's loss is
    # -log(e^{1/t} / (e^{1/t} + (N-1))) in both directions
    a = torch.eye(3)
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert info_nce(a, a.clone(), t).item() == pytest.approx(expected, abs=1e-6)
    # swapped pairs: the positive has similarity 0 and one negative has similarity 1
    swapped = a[[1, 0, 2]]
    worse = info_nce(a, swapped, t).item()
    assert worse > expected
    # hand computation for the first two rows (positive 0 vs a negative at 1/t), third row as above
    row_bad = -math.log(1 / (1 + math.exp(1 / t) + 1))
    assert worse == pytest.approx((2 * row_bad + expected) / 3, abs=1e-6)


def test_info_nce_lower_temperature_sharpens():
    a = torch.eye(4)
    assert info_nce(a, a, 0.05) < info_nce(a, a, 1.0)


def test_pairs_only_over_co_present_items():
    emb = {m: unit(5, seed=i) for i, m in enumerate(MODALITIES)}
    present = torch.tensor([[1.0, 1, 0], [1, 1, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]])
    t = 0.2
    both = {  # items that have both modalities of the pair
        ("image", "text"): [0, 1, 3],
        ("image", "audio"): [1, 2, 3],
        ("text", "audio"): [1, 3, 4],
    }
    expected = torch.stack([info_nce(emb[a][rows], emb[b][rows], t) for (a, b), rows in both.items()]).mean()
    assert torch.allclose(pairwise_info_nce(emb, present, MODALITIES, t), expected, atol=1e-6)
    # changing an embedding where that modality is absent changes nothing
    changed = dict(emb, audio=emb["audio"].clone())
    changed["audio"][0] = unit(1, seed=9)[0]
    assert torch.allclose(pairwise_info_nce(changed, present, MODALITIES, t), expected, atol=1e-6)


def test_pairs_with_fewer_than_two_items_are_skipped():
    emb = {m: unit(3, seed=i) for i, m in enumerate(MODALITIES)}
    present = torch.tensor([[1.0, 1, 0], [1, 0, 0], [0, 0, 1]])  # image+text: one item only
    assert pairwise_info_nce(emb, present, MODALITIES, 0.1) is None


def test_auxiliary_ce_uses_present_items_only():
    labels = torch.tensor([0, 1, 2])
    logits = {m: torch.randn(3, 4, generator=torch.Generator().manual_seed(i)) for i, m in enumerate(MODALITIES)}
    present = torch.tensor([[1.0, 0, 1], [1, 0, 0], [0, 0, 1]])
    expected = (
        F.cross_entropy(logits["image"][:2], labels[:2]) + F.cross_entropy(logits["audio"][[0, 2]], labels[[0, 2]])
    ) / 2
    assert torch.allclose(auxiliary_ce(logits, present, labels, MODALITIES), expected)


@pytest.mark.parametrize("contrastive", ["item", "label"])
def test_total_loss_weights(contrastive):
    emb = {m: unit(4, seed=i) for i, m in enumerate(MODALITIES)}
    aux = {m: torch.randn(4, 3, generator=torch.Generator().manual_seed(10 + i)) for i, m in enumerate(MODALITIES)}
    out = FusedOutput(torch.randn(4, 3, generator=torch.Generator().manual_seed(5)), unit(4), emb, aux)
    present, labels = torch.ones(4, 3), torch.tensor([0, 1, 2, 0])
    cfg = SimpleNamespace(w_fused=1.0, w_aux=0.5, w_nce=0.25, temperature=0.1, contrastive=contrastive,
                          matryoshka_dims=[], matryoshka_weight=1.0, contrastive_fused=True)  # fmt: skip
    total, parts = total_loss(out, present, labels, MODALITIES, cfg)
    assert set(parts) == {"fused", "aux", "nce"}
    # the fused embedding is one more modality of the contrastive term, present on every row
    points, names, mask = emb | {"fused": out.fused}, [*MODALITIES, "fused"], torch.ones(4, 4)
    term = label_contrastive if contrastive == "label" else pairwise_info_nce
    args = (points, mask, labels, names, 0.1) if contrastive == "label" else (points, mask, names, 0.1)
    assert parts["nce"] == pytest.approx(float(term(*args)), rel=1e-6)
    assert total.item() == pytest.approx(parts["fused"] + 0.5 * parts["aux"] + 0.25 * parts["nce"], rel=1e-6)
