"""Temperature scaling (Guo et al., 2017): one temperature for the fused answer and one per modality head,
fitted on the validation split after training, stored in the model (FusedModel.temperature) and so inside
fusion.onnx: the server's probabilities are calibrated with no server-side step.

A temperature divides the logits: it changes confidence, never the arg-max, so accuracy is untouched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from training.data.splits import Split
from training.model.fused import FusedModel


def fit_temperature(
    logits: torch.Tensor, labels: torch.Tensor, steps: int = 200, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """The T in `bounds` minimising NLL(softmax(logits / T), labels). logits [N,C], labels [N]; 1.0 for no data.

    Zero-shot cosines (in [-1, 1]) want T near 0.01-0.1: training/evaluate_search.py passes its own bounds and
    starts at their geometric middle."""
    if len(labels) == 0:
        return 1.0
    start = 0.0 if bounds[0] <= 1.0 <= bounds[1] else 0.5 * (math.log(bounds[0]) + math.log(bounds[1]))
    log_t = torch.full((1,), start, requires_grad=True)  # optimise log T: positive by construction
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(*bounds))


@torch.no_grad()
def _raw_outputs(model: FusedModel, split: Split):
    """Uncalibrated fused logits [N,C] and per-modality head logits {m: [N_m,C]} on the items having m."""
    model.eval()
    features, present, labels = split.take(torch.arange(len(split)))
    out = model(features, present)
    scale = model.temperature
    heads = {m: (out.aux_logits[m] * scale[1 + i])[present[:, i] > 0.5] for i, m in enumerate(model.modalities)}
    targets = {m: labels[present[:, i] > 0.5] for i, m in enumerate(model.modalities)}
    return out.logits * scale[0], labels, heads, targets


def calibrate(model: FusedModel, split: Split) -> dict[str, float]:
    """Fit and set model.temperature on `split` (validation); returns {"fused": T, <modality>: T, …}."""
    with torch.enable_grad():
        logits, labels, heads, targets = _raw_outputs(model, split)
        fitted = {"fused": fit_temperature(logits, labels)}
        fitted |= {m: fit_temperature(heads[m], targets[m]) for m in model.modalities}
    model.temperature.copy_(torch.tensor([fitted["fused"], *(fitted[m] for m in model.modalities)]))
    return fitted
