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


def ort_providers(device) -> list:
    """onnxruntime providers for a torch.device: its GPU on the CUDA EP (CPU for what CUDA lacks), else the CPU."""
    if device.type == "cuda":
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def autocast_dtype(device, precision: str):
    """The autocast dtype for fine-tuning on `device`, or None for full fp32 (always on CPU: autocast there is slower
    than fp32 for these models and would change today's CPU results)."""
    import torch

    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device, precision: str):
    """Context manager: mixed precision on a GPU as `precision` says, a no-op otherwise."""
    import contextlib

    import torch

    dtype = autocast_dtype(device, precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def grad_scaler(device, precision: str):
    """fp16 gradients need loss scaling (bf16 and fp32 do not): a GradScaler enabled only then."""
    import torch

    dtype = autocast_dtype(device, precision)
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
