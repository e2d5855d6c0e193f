"""fusion.onnx: the trained fusion, per-modality heads and calibration (ServingGraph), checked against torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from service import manifest as mf
from training.export_encoders import OPSET, ParityError, ort_session
from training.model.fused import FusedModel, ServingGraph


def all_subsets_present(batch_rows: int, m: int) -> torch.Tensor:
    """[batch_rows, M] present masks cycling through every non-empty subset (bit patterns 1 .. 2^M - 1)."""
    codes = torch.arange(batch_rows) % (2**m - 1) + 1
    return ((codes[:, None] >> torch.arange(m)) & 1).float()


OUTPUTS = ("logits", "fused", "modality_logits")


def export_fusion(model: FusedModel, path: Path, tolerance: float = 1e-5) -> tuple[mf.FusionSpec, float]:
    """fusion.onnx (ServingGraph): "<m>_embedding" [batch,D] per modality + "present" [batch,M] →
    logits [batch,C], fused [batch,D], modality_logits [batch,M,C] — calibrated by model.temperature."""
    graph, names = ServingGraph(model).eval(), [f"{m}_embedding" for m in model.modalities]
    m, dim, classes = len(model.modalities), model.dim, model.n_classes
    example = (*torch.randn(m, 3, dim, generator=torch.Generator().manual_seed(0)), all_subsets_present(3, m))
    axes = {name: {0: "batch"} for name in [*names, "present", *OUTPUTS]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice (torch is pinned)
        torch.onnx.export(
            graph, example, str(path), dynamo=False, opset_version=OPSET, input_names=[*names, "present"],
            output_names=list(OUTPUTS), dynamic_axes=axes, do_constant_folding=True,
        )  # fmt: skip
    diff = fusion_parity(graph, path, m, dim)
    if not diff <= tolerance:
        raise ParityError(f"fusion: ORT vs torch max |diff| {diff:.3g} > {tolerance:g}")
    f32 = "float32"
    inputs = [mf.TensorSpec(name=n, dtype=f32, shape=["batch", dim]) for n in names]
    inputs.append(mf.TensorSpec(name="present", dtype=f32, shape=["batch", m]))
    outputs = [
        mf.TensorSpec(name="logits", dtype=f32, shape=["batch", classes]),
        mf.TensorSpec(name="fused", dtype=f32, shape=["batch", dim]),
        mf.TensorSpec(name="modality_logits", dtype=f32, shape=["batch", m, classes]),
    ]
    spec = mf.FusionSpec(file=path.name, strategy=model.fusion.strategy, modalities=model.modalities,
                         inputs=inputs, outputs=outputs)  # fmt: skip
    return spec, diff


def fusion_parity(graph: ServingGraph, path: Path, m: int, dim: int, rows: int = 17) -> float:
    """Max |ORT − torch| over every output on one batch of `rows` (≠ the export batch) covering every subset."""
    g = torch.Generator().manual_seed(1)
    embeddings = [torch.nn.functional.normalize(torch.randn(rows, dim, generator=g), dim=-1) for _ in range(m)]
    present = all_subsets_present(rows, m)
    with torch.no_grad():
        expected = [t.numpy() for t in graph(*embeddings, present)]
    session = ort_session(path)
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), [*embeddings, present], strict=True)}
    got = session.run(list(OUTPUTS), feeds)
    return max(float(np.abs(a - b).max()) for a, b in zip(got, expected, strict=True))
