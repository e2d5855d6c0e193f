"""Where training runs: `device = "auto" | "cpu" | "cuda" | "cuda:N"` (TrainConfig.device, `--device`).

auto picks the first visible GPU (torch.cuda.is_available()), else the CPU. Under torchrun each rank takes the
GPU of its LOCAL_RANK (training/distributed.py), so `cuda` means "this rank's GPU" there.
"""

from __future__ import annotations

import os
import re

_SPEC = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_problem(spec: str) -> str | None:
    """A config check: the spelling only (whether that GPU exists is known when training starts)."""
    if _SPEC.fullmatch(spec):
        return None
    return f"device must be auto, cpu, cuda or cuda:N, got {spec!r}"


def resolve_device(spec: str):
    """The torch.device a spec names on this machine; a GPU asked for but absent is a UserError."""
    import torch

    from training.errors import UserError

    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"device {spec!r}: no CUDA GPU is visible to torch (use --device cpu or auto)")
    index = int(spec.split(":")[1]) if ":" in spec else int(os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise UserError(f"device {spec!r}: only {torch.cuda.device_count()} GPU(s) are visible")
    return torch.device("cuda", index)
