"""The protocol-neutral types every process shares: what a request item is before and after preprocessing, and
what the engine answers for it. Plain data, no onnxruntime and no inference import, so the protocols and the
wire (service/wire/frames.py) use them without pulling the engine in (docs/architecture.md "Import rules")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.manifest import MODALITIES


@dataclass
class RawItem:
    image: bytes | None = None
    audio: bytes | None = None
    text: str | bytes | None = None
    prefix: str = ""  # "inputs[3]." for JSON items, so errors name the exact field
    suffix: str = ""  # "[3]" for KServe V2 rows, whose fields are tensor elements: "image[3]"

    def modalities(self) -> list[str]:
        return [m for m in MODALITIES if getattr(self, m) is not None]

    def field(self, modality: str) -> str:
        return f"{self.prefix}{modality}{self.suffix}"


@dataclass
class PreparedItem:
    arrays: dict[str, Any]  # image [3,S,S] f32 · text (ids [L], mask [L]) i64 · audio mel [n_mels,T] f32
    decode_s: float = 0.0
    modalities: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.modalities = [m for m in MODALITIES if m in self.arrays]


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
