"""Export one encoder (backbone + projection) to ONNX and prove ONNX Runtime agrees with torch.

Exporter choice, pinned: the TorchScript exporter (`dynamo=False`) at opset 17. Both exporters handled
the three encoders with dynamic axes in our checks; this one needs no extra
dependency (the dynamo exporter needs onnxscript), exports in seconds, and names dynamic axes directly.
Tracing bakes in Python control flow, so the check below runs ORT on inputs whose batch size and length
differ from the example (and with padding), which is where a baked-in shape would show up.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from service.manifest import TensorSpec

OPSET = 17
OUTPUT_NAME = "embedding"
TOLERANCE = 1e-4

# modality → [(input name, dynamic axes {dim: axis name})]
INPUTS: dict[str, list[tuple[str, dict[int, str]]]] = {
    "image": [("pixel_values", {0: "batch"})],
    "text": [("input_ids", {0: "batch", 1: "sequence"}), ("attention_mask", {0: "batch", 1: "sequence"})],
    "audio": [("input_features", {0: "batch", 2: "frames"}), ("frame_mask", {0: "batch", 1: "frames"})],
}


class ParityError(RuntimeError):
    """ONNX Runtime and torch disagree by more than the tolerance."""


@dataclass
class ExportResult:
    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_abs_diff: float  # ORT vs torch over every checked input set
    export_s: float
    size_bytes: int


def tensor_specs(modality: str, example: Sequence[torch.Tensor], dim: int) -> tuple[list, list]:
    """Manifest specs: fixed dims and the dtype from the example (image pixels: float32, or uint8 when the graph
    normalises them), dynamic dims by name."""
    inputs = []
    for (name, axes), tensor in zip(INPUTS[modality], example, strict=True):
        shape = [axes.get(i, int(size)) for i, size in enumerate(tensor.shape)]
        inputs.append(TensorSpec(name=name, dtype=str(tensor.dtype).removeprefix("torch."), shape=shape))
    return inputs, [TensorSpec(name=OUTPUT_NAME, dtype="float32", shape=["batch", dim])]


def _to_onnx(module: nn.Module, modality: str, path: Path, example: tuple[torch.Tensor, ...]) -> None:
    names = [name for name, _ in INPUTS[modality]]
    dynamic_axes = {name: axes for name, axes in INPUTS[modality]} | {OUTPUT_NAME: {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter is deprecated upstream; torch is pinned, so the warning is noise
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # benign: a step-2 slice (audio mask) is not constant-folded; BERT's mask builder indexes with
        # aranges (never negative). Both are covered by the ORT-vs-torch check on other shapes below.
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        warnings.filterwarnings("ignore", "Exporting aten::index operator of advanced indexing", UserWarning)
        torch.onnx.export(
            module, example, str(path), dynamo=False, opset_version=OPSET, input_names=names,
            output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes, do_constant_folding=True,
        )  # fmt: skip


def ort_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_diff_vs_torch(
    module: nn.Module,
    session: ort.InferenceSession,
    input_sets: Sequence[Sequence[torch.Tensor]],
) -> float:
    """Largest |ORT − torch| over all input sets."""
    names = [i.name for i in session.get_inputs()]
    worst = 0.0
    for inputs in input_sets:
        with torch.no_grad():
            expected = module(*inputs).numpy()
        feeds = {n: t.numpy() for n, t in zip(names, inputs, strict=True)}
        (got,) = session.run([OUTPUT_NAME], feeds)
        if got.shape != expected.shape:
            raise ParityError(f"ORT output shape {got.shape} != torch {expected.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def export_encoder(
    module: nn.Module,
    modality: str,
    path: str | Path,
    example_inputs: Sequence[torch.Tensor],
    check_inputs: Sequence[Sequence[torch.Tensor]] = (),
    tolerance: float = TOLERANCE,
) -> ExportResult:
    """Export `module` (forward = the modality's ONNX inputs → [B,D]) and check ORT against torch.

    The check runs on `example_inputs` and every set in `check_inputs` (give other batch sizes and
    lengths: that is what proves the dynamic axes). Raises ParityError above `tolerance`.
    """
    if modality not in INPUTS:
        raise ValueError(f"unknown modality {modality!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    example = tuple(example_inputs)
    start = time.perf_counter()
    _to_onnx(module, modality, path, example)
    export_s = time.perf_counter() - start
    diff = max_diff_vs_torch(module, ort_session(path), [example, *check_inputs])
    if not diff <= tolerance:  # also catches NaN
        raise ParityError(f"{modality} encoder: ORT vs torch max |diff| {diff:.3g} > {tolerance:g}")
    with torch.no_grad():
        dim = module(*example).shape[-1]
    specs_in, specs_out = tensor_specs(modality, example, dim)
    return ExportResult(path, specs_in, specs_out, diff, export_s, path.stat().st_size)
