"""Matryoshka training: the contrastive term at each prefix (truncated, re-normalised) besides the full dim, over
every modality and the fused embedding; matryoshka_dims is validated and travels through TOML and the CLI."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from training.config import TrainConfig, add_config_arguments, config_from_args, load_toml
from training.errors import ConfigError
from training.losses import joint_contrastive, label_contrastive, pairwise_info_nce, prefix, total_loss
from training.model.fused import FusedOutput

MODALITIES = ["image", "text", "audio"]


def raw(rows: int, dim: int = 8, seed: int = 0, grad: bool = False) -> torch.Tensor:
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), requires_grad=grad)


def outputs(grad: bool = False) -> tuple[FusedOutput, dict[str, torch.Tensor]]:
    leaves = {m: raw(6, seed=i, grad=grad) for i, m in enumerate([*MODALITIES, "fused"])}
    emb = {m: F.normalize(leaves[m], dim=-1) for m in MODALITIES}
    zeros = torch.zeros(6, 3)
    return FusedOutput(zeros, F.normalize(leaves["fused"], dim=-1), emb, dict.fromkeys(MODALITIES, zeros)), leaves


PRESENT = torch.tensor([[1.0, 1, 0], [1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]])
LABELS = torch.tensor([0, 1, 0, 1, 2, 2])


def cfg(contrastive: str = "label", dims=(), weight: float = 1.0) -> SimpleNamespace:
    return SimpleNamespace(contrastive=contrastive, temperature=0.1, matryoshka_dims=list(dims), w_fused=1.0,
                           w_aux=0.5, w_nce=0.2, matryoshka_weight=weight, contrastive_fused=True)  # fmt: skip


@pytest.mark.parametrize("contrastive", ["label", "item"])
def test_prefix_terms_are_averaged_with_the_full_dim(contrastive):
    out, _ = outputs()
    full = joint_contrastive(out, PRESENT, LABELS, MODALITIES, cfg(contrastive))
    both = joint_contrastive(out, PRESENT, LABELS, MODALITIES, cfg(contrastive, [2]))
    assert not torch.isclose(full, both)
    names, mask = [*MODALITIES, "fused"], torch.cat([PRESENT, torch.ones(6, 1)], dim=1)
    cut = {m: F.normalize(e[:, :2], dim=-1) for m, e in (out.embeddings | {"fused": out.fused}).items()}
    if contrastive == "label":
        short = label_contrastive(cut, mask, LABELS, names, 0.1)
    else:
        short = pairwise_info_nce(cut, mask, names, 0.1)
    assert both.item() == pytest.approx((full.item() + short.item()) / 2, rel=1e-6)
    total, parts = total_loss(out, PRESENT, LABELS, MODALITIES, cfg(contrastive, [2]))
    assert parts["nce"] == pytest.approx(both.item(), rel=1e-6)


def test_prefix_weight():
    out, _ = outputs()
    full = joint_contrastive(out, PRESENT, LABELS, MODALITIES, cfg())
    even = joint_contrastive(out, PRESENT, LABELS, MODALITIES, cfg(dims=[2, 4]))
    short = [joint_contrastive(out, PRESENT, LABELS, MODALITIES, cfg(dims=[d])) * 2 - full for d in (2, 4)]
    assert even.item() == pytest.approx((full + short[0] + short[1]).item() / 3, rel=1e-5)
    half = joint_contrastive(out, PRESENT, LABELS, MODALITIES, cfg(dims=[2, 4], weight=0.5))
    assert half.item() == pytest.approx((full + 0.5 * short[0] + 0.5 * short[1]).item() / 2, rel=1e-5)
    off = joint_contrastive(out, PRESENT, LABELS, MODALITIES, cfg(dims=[2, 4], weight=0.0))
    assert off.item() == pytest.approx(full.item(), rel=1e-6)
    with pytest.raises(ConfigError, match="matryoshka_weight"):
        TrainConfig(matryoshka_weight=-1.0)


def test_without_the_fused_embedding_the_term_is_the_slots_alone():
    out, _ = outputs()
    slots = SimpleNamespace(**vars(cfg()) | {"contrastive_fused": False})
    expected = label_contrastive(out.embeddings, PRESENT, LABELS, MODALITIES, 0.1)
    assert joint_contrastive(out, PRESENT, LABELS, MODALITIES, slots).item() == pytest.approx(expected.item())
    assert joint_contrastive(out, PRESENT, LABELS, MODALITIES, cfg()).item() != pytest.approx(expected.item())


def test_gradients_reach_the_prefix_of_every_modality_and_fused():
    out, leaves = outputs(grad=True)
    with_prefix = joint_contrastive(out, PRESENT, LABELS, MODALITIES, cfg(dims=[2]))
    full_only = joint_contrastive(out, PRESENT, LABELS, MODALITIES, cfg())
    prefix_term = 2 * with_prefix - full_only  # the 2-d term alone: it sees only the first two dimensions
    prefix_term.backward()
    for name, leaf in leaves.items():
        rows = torch.ones(6, dtype=torch.bool) if name == "fused" else PRESENT[:, MODALITIES.index(name)] > 0.5
        assert leaf.grad[rows, :2].abs().sum() > 0, name
        assert leaf.grad[:, 2:].abs().max() < 1e-5, name  # the dimensions past the prefix get nothing from it
        assert leaf.grad[~rows].abs().sum() == 0, name  # nor do absent modalities


def test_prefix_renormalises():
    rows = F.normalize(torch.randn(4, 8), dim=-1)
    cut = prefix(rows, 3)
    assert cut.shape == (4, 3) and torch.allclose(cut.norm(dim=-1), torch.ones(4))
    assert prefix(rows, 8) is rows


def test_matryoshka_dims_default_and_validation():
    assert TrainConfig().matryoshka_dims == [64, 128]
    assert TrainConfig(matryoshka_dims=[]).matryoshka_dims == []
    for bad in ([64, 256], [128, 64], [64, 64], [0], [300]):
        with pytest.raises(ConfigError, match="matryoshka_dims"):
            TrainConfig(matryoshka_dims=bad)
    with pytest.raises(ConfigError, match=r"matryoshka_dims .* dim = 32"):
        TrainConfig(dim=32)  # the default prefixes do not fit a 32-d space: the message says how to turn them off


def test_matryoshka_dims_from_toml_and_cli(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("matryoshka_dims = [32]\n")
    assert load_toml(path) == {"matryoshka_dims": [32]}
    path.write_text('matryoshka_dims = ["32"]\n')
    with pytest.raises(ConfigError, match="matryoshka_dims"):
        load_toml(path)
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    assert config_from_args(parser.parse_args(["--matryoshka-dims", "32,96"])).matryoshka_dims == [32, 96]
    assert config_from_args(parser.parse_args(["--matryoshka-dims", ""])).matryoshka_dims == []
    with pytest.raises(SystemExit):
        parser.parse_args(["--matryoshka-dims", "a,b"])
