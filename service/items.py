"""The protocol-neutral types every process shares: what a request item is before and after preprocessing, and
what the engine answers for it. Plain data, no onnxruntime and no inference import, so the protocols and the
wire (service/wire/frames.py) use them without pulling the engine in (docs/architecture.md "Import rules")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service import manifest


@dataclass(init=False)
class RawItem:
    """One request item as it arrived: its parts by modality name (bytes of a file, or text), with where its
    fields are in the request. `RawItem(image=..., text=...)` sets parts; `item.image` reads one (None when
    absent) and `item.image = ...` sets it, for every name in service.manifest.MODALITIES."""

    parts: dict[str, bytes | str]
    prefix: str  # "inputs[3]." for JSON items, so errors name the exact field
    suffix: str  # "[3]" for KServe V2 rows, whose fields are tensor elements: "image[3]"

    def __init__(self, *, prefix: str = "", suffix: str = "", **parts: bytes | str | None):
        unknown = [name for name in parts if name not in manifest.MODALITIES]
        if unknown:
            raise TypeError(f"RawItem got unknown modalities {unknown}; known: {', '.join(manifest.MODALITIES)}")
        self.parts = {name: value for name, value in parts.items() if value is not None}
        self.prefix, self.suffix = prefix, suffix

    def __getattr__(self, name: str):  # only for names that are no attribute: the modalities
        if name in manifest.MODALITIES:
            return self.__dict__.get("parts", {}).get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in manifest.MODALITIES:
            self.set(name, value)
        else:
            super().__setattr__(name, value)

    def get(self, modality: str) -> bytes | str | None:
        return self.parts.get(modality)

    def set(self, modality: str, value: bytes | str | None) -> None:
        if value is None:
            self.parts.pop(modality, None)
        else:
            self.parts[modality] = value

    def modalities(self) -> list[str]:
        return [m for m in manifest.MODALITIES if m in self.parts]

    def field(self, modality: str) -> str:
        return f"{self.prefix}{modality}{self.suffix}"


@dataclass
class PreparedItem:
    arrays: dict[str, Any]  # image [3,S,S] f32 · text (ids [L], mask [L]) i64 · audio mel [n_mels,T] f32
    decode_s: float = 0.0
    modalities: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.modalities = [m for m in manifest.MODALITIES if m in self.arrays]


@dataclass(frozen=True)
class BatchInfo:
    size: int  # items in the batch this item ran in
    queue_s: float  # time from submit to batch start
    infer_s: float  # run_batch wall time, less what it spent on another component's compute


@dataclass
class ItemResult:
    modalities: list[str]
    probabilities: np.ndarray  # [C]
    fused: np.ndarray  # [D]
    embeddings: dict[str, np.ndarray]  # modality → [D]
    modality_probabilities: dict[str, np.ndarray] = field(default_factory=dict)  # present modality → [C]
    batches: dict[str, BatchInfo] = field(default_factory=dict)  # component → the batch it ran in

    @property
    def queue_s(self) -> float:  # critical path: slowest encoder, then fusion
        return self._path("queue_s")

    @property
    def infer_s(self) -> float:
        return self._path("infer_s")

    def _path(self, attr: str) -> float:
        encoders = [getattr(info, attr) for name, info in self.batches.items() if name != "fusion"]
        fusion = self.batches.get("fusion")
        return max(encoders, default=0.0) + (getattr(fusion, attr) if fusion else 0.0)
