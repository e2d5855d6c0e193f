"""Run a frozen backbone on ONNX Runtime to extract features: same numbers, several times faster on CPU.

On 2 CPU cores torch's EfficientNet-Lite0 costs ~100 ms of CPU per 224x224 image and ORT's ~15–35 ms, so
for a few thousand images this decides whether `build-default` fits its time budget. The backbone is
exported once per encoder id (next to the cached features, so a later run reuses the file), then checked
against torch on the first batch; any export or parity failure falls back to torch with a warning.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.device import ort_providers
from training.model.backbones import MODALITY_INPUTS

PARITY_TOLERANCE = 1e-3  # features only feed trainable heads; ORT and torch agree to ~1e-5
_DYNAMIC_AXES = {
    "pixel_values": {0: "batch"},
    "input_ids": {0: "batch", 1: "sequence"},
    "attention_mask": {0: "batch", 1: "sequence"},
    "input_features": {0: "batch", 2: "frames"},
    "frame_mask": {0: "batch", 1: "frames"},
}


class _Features(nn.Module):
    """The backbone's feature function as a module with positional inputs (what ONNX export traces)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return getattr(self.backbone, "features", self.backbone)(*inputs)


def export_backbone(backbone: nn.Module, modality: str, example: tuple[torch.Tensor, ...], path: Path) -> None:
    """Trace the backbone's features to ONNX (opset 17, dynamic batch/length axes); atomic write."""
    names = list(MODALITY_INPUTS[modality])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript-exporter deprecation and tracer warnings
            torch.onnx.export(
                _Features(backbone).eval(),
                example,
                tmp,
                input_names=names,
                output_names=["features"],
                dynamic_axes={name: _DYNAMIC_AXES[name] for name in names},
                opset_version=17,
                dynamo=False,
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared like any build output
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


class OrtFeatures:
    """Callable like backbone.features(*tensors) → tensor, backed by an ONNX Runtime session."""

    def __init__(self, path: Path, modality: str, threads: int | None = None, device: torch.device | None = None):
        import onnxruntime as ort

        device = device or torch.device("cpu")
        if device.type == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            # the CPU wheel: running the encoder on the CPU beside an idle GPU would be the slowest choice
            raise RuntimeError("this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=ort_providers(device))
        self.names = list(MODALITY_INPUTS[modality])

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        feeds = {name: tensor.cpu().numpy() for name, tensor in zip(self.names, inputs, strict=True)}
        return torch.from_numpy(self.session.run(None, feeds)[0])


_SESSIONS: dict[tuple, OrtFeatures] = {}  # (path, mtime, device, threads) → session: one per encoder per process
_MAX_SESSIONS = 8


def cached_session(path: Path, modality: str, device: torch.device) -> OrtFeatures:
    """One ORT session per exported backbone per process: a training run makes four feature passes per encoder
    (train, val, test, views), and a session costs a graph load and its allocations each time."""
    key = (str(path), path.stat().st_mtime_ns, str(device), torch.get_num_threads())
    if key not in _SESSIONS:
        while len(_SESSIONS) >= _MAX_SESSIONS:
            _SESSIONS.pop(next(iter(_SESSIONS)))
        _SESSIONS[key] = OrtFeatures(path, modality, device=device)
    return _SESSIONS[key]


def _verified_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _stamp(device: torch.device) -> dict:
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__, "device": device.type}


def was_verified(path: Path, device: torch.device) -> bool:
    """Whether this exported backbone already matched torch with this onnxruntime on this kind of device. The path
    is keyed by the weights and preprocessing digest (features.encoder_id), so only ORT and the device can differ."""
    try:
        recorded = json.loads(_verified_path(path).read_text())
        return all(recorded.get(name) == value for name, value in _stamp(device).items())
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def mark_verified(path: Path, device: torch.device, diff: float) -> None:
    marker = _verified_path(path)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_stamp(device) | {"max_abs_diff": diff}))
    os.replace(tmp, marker)


class FeatureRunner:
    """Picks the engine on the first batch: ORT when the backbone is frozen and ORT matches torch.

    On a CUDA `device` ORT runs on its CUDA EP; torch runs wherever the backbone's parameters are (extract_features
    moves it to the device). Inputs arrive as CPU tensors; the features always come back as CPU float32.
    """

    def __init__(
        self,
        backbone: nn.Module,
        modality: str,
        onnx_path: Path | None,
        engine: str = "auto",
        device: torch.device | None = None,
    ):
        if engine not in ("auto", "torch", "onnx"):
            raise ValueError(f"engine must be auto, torch or onnx, not {engine!r}")
        self.backbone, self.modality, self.onnx_path = backbone, modality, onnx_path
        self.device = device or torch.device("cpu")
        self.torch_run = getattr(backbone, "features", backbone)
        frozen = not any(p.requires_grad for p in backbone.parameters())
        self.engine = "torch" if engine == "torch" or (engine == "auto" and not frozen) else "undecided"
        self.ort: OrtFeatures | None = None
        if self.engine == "undecided" and onnx_path is not None and onnx_path.is_file():
            self._reuse_verified(onnx_path)

    def _reuse_verified(self, path: Path) -> None:
        """A backbone exported and checked against torch by an earlier pass: ORT from the first batch, without
        running torch on it again (on CPU that torch batch costs as much as ~5 ORT batches for an image encoder)."""
        try:
            if was_verified(path, self.device):
                self.ort, self.engine = cached_session(path, self.modality, self.device), "onnx"
        except Exception:  # an unreadable file or a failing session: decide on the first batch, as without it
            self.ort, self.engine = None, "undecided"

    def _try_ort(self, inputs: tuple[torch.Tensor, ...], reference: torch.Tensor) -> None:
        path = self.onnx_path or Path(tempfile.mkdtemp(prefix="fusionserve-features-")) / "backbone.onnx"
        try:
            if not path.is_file():
                export_backbone(self.backbone, self.modality, inputs, path)
            ort_features = cached_session(path, self.modality, self.device) if self.onnx_path else None
            ort_features = ort_features or OrtFeatures(path, self.modality, device=self.device)
            diff = float((ort_features(*inputs) - reference).abs().max())
        except Exception as exc:  # any exporter/ORT failure: torch still gives the right answer
            warnings.warn(f"{self.modality} features: ONNX Runtime unavailable ({exc}); using torch", stacklevel=3)
            self.engine = "torch"
            return
        if np.isfinite(diff) and diff <= PARITY_TOLERANCE:
            self.ort, self.engine = ort_features, "onnx"
            if self.onnx_path is not None:
                mark_verified(path, self.device, diff)
        else:
            warnings.warn(f"{self.modality} features: ORT differs from torch by {diff:.2e}; using torch", stacklevel=3)
            path.unlink(missing_ok=True)
            _verified_path(path).unlink(missing_ok=True)
            self.engine = "torch"

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.engine == "onnx":
            return self.ort(*inputs)
        home = next(self.backbone.parameters(), None)  # torch runs where the backbone is (the caller moves it)
        if home is not None and home.device.type != "cpu":
            inputs = tuple(tensor.to(home.device, non_blocking=True) for tensor in inputs)
        reference = self.torch_run(*inputs).float().cpu()
        if self.engine == "undecided":
            self._try_ort(tuple(tensor.cpu() for tensor in inputs), reference)
        return reference
