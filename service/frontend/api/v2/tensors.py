"""The Open Inference Protocol's request and response, transport-free (core.py runs them; rest_codec.py and
grpc_codec.py read and write them)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tensor:
    name: str
    datatype: str  # "BYTES" | "FP32" | "BOOL" | "INT64" | ... (KServe V2 names)
    shape: list[int]
    data: np.ndarray | list[bytes]  # numeric/BOOL: np.ndarray already of `shape`; BYTES: flat row-major bytes
    parameters: dict = field(default_factory=dict)


@dataclass
class InferRequest:
    inputs: list[Tensor]
    outputs: list[str] | None = None  # requested output names; None = all
    id: str | None = None
    parameters: dict = field(default_factory=dict)


@dataclass
class InferResponse:
    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str | None = None
