"""The server's answers as dataclasses (docs/protocols.md, v1: the bodies, one object per item)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODALITY_ORDER = ("image", "text", "audio")  # the order the server reports modalities in


@dataclass(frozen=True)
class Label:
    label: str
    score: float


@dataclass(frozen=True)
class Evidence:
    """One present modality's own head (classify with explain=True)."""

    modality: str
    label: str
    score: float
    agrees: bool  # its top label is the fused top label


@dataclass(frozen=True)
class Classification:
    model: str
    version: str
    modalities: list[str]  # the modalities this item was classified from
    labels: list[Label]  # best first, top_k of them
    evidence: list[Evidence] | None = None  # explain=True only
    agreement: bool | None = None  # explain=True only: every modality agrees with the fusion

    @property
    def top(self) -> Label:
        return self.labels[0]


@dataclass(frozen=True)
class Embedding:
    model: str
    version: str
    modalities: list[str]
    fused: list[float]  # the fused joint-space embedding (L2-normalised)
    per_modality: dict[str, list[float]] = field(default_factory=dict)  # each present modality's own

    @property
    def dim(self) -> int:
        return len(self.fused)


@dataclass(frozen=True)
class ModelVersion:
    version: str
    status: str  # "ready", "loading", "failed"…
    reason: str | None = None  # why it is not ready
    modalities: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    embedding_dim: int | None = None
    explain: bool = False  # classify(explain=True) has per-modality evidence


@dataclass(frozen=True)
class ModelInfo:
    name: str
    default_version: str | None  # the newest ready version: what a request without version= gets
    versions: list[ModelVersion]
    limits: dict[str, Any]  # max_upload_bytes, max_image_pixels, max_audio_seconds, max_text_chars…


def classifications(body: dict) -> list[Classification]:
    model, version = body["model"], body["version"]
    out = []
    for row in body["results"]:
        evidence = row.get("evidence")
        out.append(
            Classification(
                model=model,
                version=version,
                modalities=list(row["modalities"]),
                labels=[Label(str(r["label"]), float(r["score"])) for r in row["labels"]],
                evidence=None if evidence is None else [_evidence(e) for e in evidence],
                agreement=row.get("agreement"),
            )
        )
    return out


def _evidence(row: dict) -> Evidence:
    return Evidence(str(row["modality"]), str(row["label"]), float(row["score"]), bool(row["agrees"]))


def embeddings(body: dict) -> list[Embedding]:
    model, version = body["model"], body["version"]
    return [
        Embedding(
            model=model,
            version=version,
            modalities=list(row["modalities"]),
            fused=list(row["fused"]),
            per_modality={m: list(row[m]) for m in MODALITY_ORDER if row.get(m) is not None},
        )
        for row in body["results"]
    ]


def model_info(body: dict) -> ModelInfo:
    known = ModelVersion.__dataclass_fields__
    versions = [ModelVersion(**{k: v for k, v in row.items() if k in known}) for row in body["versions"]]
    return ModelInfo(body["name"], body.get("default_version"), versions, dict(body.get("limits", {})))
