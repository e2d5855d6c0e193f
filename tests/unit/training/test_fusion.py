"""Fusion modules: shapes, absent modalities truly ignored, gradients, ONNX export parity on all subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.export_encoders import ort_session
from training.export_fusion import all_subsets_present, export_fusion
from training.model.fused import FusedModel
from training.model.fusion import FUSIONS, build_fusion

torch.set_num_threads(1)
MODALITIES = ["image", "text", "audio"]
DIM, CLASSES = 32, 5


def make(strategy: str, modalities=MODALITIES, seed: int = 0):
    torch.manual_seed(seed)
    return build_fusion(strategy, modalities, DIM, CLASSES, hidden=48, heads=4, layers=2, dropout=0.1).eval()


def embeddings(batch: int, seed: int = 0, modalities=MODALITIES) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: F.normalize(torch.randn(batch, DIM, generator=g), dim=-1) for m in modalities}


@pytest.mark.parametrize("strategy", list(FUSIONS))
def test_shapes_and_unit_norm(strategy):
    fusion = make(strategy)
    present = all_subsets_present(14, 3)  # every subset twice
    logits, fused = fusion(embeddings(14), present)
    assert logits.shape == (14, CLASSES) and fused.shape == (14, DIM)
    assert torch.allclose(fused.norm(dim=-1), torch.ones(14), atol=1e-5)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("strategy", list(FUSIONS))
def test_absent_embeddings_are_ignored(strategy):
    fusion = make(strategy)
    present = all_subsets_present(7, 3)  # the 7 subsets, one row each
    base = embeddings(7)
    expected = fusion(base, present)
    mask = {m: present[:, [i]] > 0 for i, m in enumerate(MODALITIES)}  # [B,1] each
    changed = {m: torch.where(mask[m], e, torch.randn_like(e) * 50) for m, e in base.items()}
    garbage = {m: torch.where(mask[m], e, torch.full_like(e, float("nan"))) for m, e in base.items()}
    for variant in (changed, garbage):
        logits, fused = fusion(variant, present)
        assert torch.equal(logits, expected[0]) and torch.equal(fused, expected[1])


@pytest.mark.parametrize("strategy", list(FUSIONS))
def test_rows_are_independent(strategy):
    """A row's output does not depend on its batch-mates (the server batches unrelated requests)."""
    fusion = make(strategy)
    present, inputs = all_subsets_present(7, 3), embeddings(7)
    batched = fusion(inputs, present)[0]
    alone = torch.cat([fusion({m: e[i : i + 1] for m, e in inputs.items()}, present[i : i + 1])[0] for i in range(7)])
    assert torch.allclose(batched, alone, atol=1e-5)


@pytest.mark.parametrize("strategy", list(FUSIONS))
def test_gradient_reaches_present_modalities_only(strategy):
    fusion = make(strategy).train()
    inputs = {m: e.requires_grad_(True) for m, e in embeddings(4).items()}
    present = torch.tensor([[1.0, 0, 1], [1, 0, 0], [0, 0, 1], [1, 0, 1]])  # text never present
    logits, fused = fusion(inputs, present)
    (F.cross_entropy(logits, torch.tensor([0, 1, 2, 3])) + fused.sum()).backward()
    assert inputs["image"].grad.abs().sum() > 0 and inputs["audio"].grad.abs().sum() > 0
    assert inputs["text"].grad.abs().sum() == 0
    assert all(p.grad is not None for p in fusion.parameters())  # every parameter is in the graph


@pytest.mark.parametrize("strategy", list(FUSIONS))
def test_single_modality_fusion(strategy):
    fusion = make(strategy, ["audio"])
    logits, fused = fusion(embeddings(3, modalities=["audio"]), torch.ones(3, 1))
    assert logits.shape == (3, CLASSES) and fused.shape == (3, DIM)


@pytest.mark.parametrize("strategy", list(FUSIONS))
def test_onnx_export_matches_torch_on_all_subsets(strategy, tmp_path):
    torch.manual_seed(0)
    model = FusedModel(MODALITIES, dict.fromkeys(MODALITIES, 8), CLASSES, fusion=strategy, dim=DIM, hidden=48,
                       heads=4, layers=2).eval()  # fmt: skip
    model.temperature.copy_(torch.tensor([1.7, 0.8, 1.3, 2.1]))  # calibration is part of the graph
    fusion = model.fusion
    spec, diff = export_fusion(model, tmp_path / "fusion.onnx")
    assert diff <= 1e-5
    assert [t.name for t in spec.inputs] == ["image_embedding", "text_embedding", "audio_embedding", "present"]
    assert [t.name for t in spec.outputs] == ["logits", "fused", "modality_logits"] and spec.strategy == strategy
    # one batch holding all 7 subsets, absent slots zero as the server sends them
    present = all_subsets_present(7, 3)
    inputs = {m: e * present[:, [i]] for i, (m, e) in enumerate(embeddings(7, seed=3).items())}
    with torch.no_grad():
        logits, fused = fusion(inputs, present)
        heads = torch.stack([model.aux[m](e) / model.temperature[1 + i] for i, (m, e) in enumerate(inputs.items())], 1)
        expected = [(logits / 1.7).numpy(), fused.numpy(), heads.numpy()]
    session = ort_session(tmp_path / "fusion.onnx")
    feeds = {f"{m}_embedding": e.numpy() for m, e in inputs.items()} | {"present": present.numpy()}
    got = session.run(["logits", "fused", "modality_logits"], feeds)
    for a, b in zip(got, expected, strict=True):
        assert np.abs(a - b).max() <= 1e-5
    single = session.run(["logits"], {k: v[:1] for k, v in feeds.items()})[0]  # dynamic batch: 1 row
    assert np.abs(single - expected[0][:1]).max() <= 1e-5
