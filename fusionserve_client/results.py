"""The server's answers as dataclasses (docs/protocols.md, v1: the bodies, one object per item)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# the order the server reports fusion's slots in: a modality, or a video's frames and sound track
SLOT_ORDER = ("image", "text", "audio", "video_frames", "video_audio")


@dataclass(frozen=True)
class Label:
    label: str
    score: float


@dataclass(frozen=True)
class Evidence:
    """One present slot's own head (classify with explain=True): a modality, or video_frames / video_audio."""

    modality: str
    label: str
    score: float
    agrees: bool  # its top label is the fused top label


@dataclass(frozen=True)
class Segment:
    """One segment of a video item, classified: its span, the video slots it had, its labels."""

    start_s: float
    end_s: float
    modalities: list[str]  # video_frames (it had pictures), video_audio (it had sound)
    labels: list[Label]  # best first, top_k of them
    evidence: list[Evidence] | None = None  # explain=True only
    agreement: bool | None = None

    @property
    def top(self) -> Label:
        return self.labels[0]


@dataclass(frozen=True)
class SegmentEmbedding:
    """One segment of a video item, embedded: its fused embedding and each video slot's it had."""

    start_s: float
    end_s: float
    modalities: list[str]
    fused: Any  # as Embedding.fused
    per_slot: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Classification:
    model: str
    version: str
    modalities: list[str]  # the modalities this item was classified from
    labels: list[Label]  # best first, top_k of them
    evidence: list[Evidence] | None = None  # explain=True only
    agreement: bool | None = None  # explain=True only: every modality agrees with the fusion
    segments: list[Segment] | None = None  # a video item's, in time order

    @property
    def top(self) -> Label:
        return self.labels[0]


@dataclass(frozen=True)
class Embedding:
    model: str
    version: str
    modalities: list[str]
    # the fused joint-space embedding (L2-normalised): a list of floats, or with embedding_types /
    # encoding_format a numpy array (a dict type → array when several types were asked for)
    fused: Any
    # each present slot's own (a video's video_frames / video_audio: the whole clip's), decoded as fused
    per_modality: dict[str, Any] = field(default_factory=dict)
    segments: list[SegmentEmbedding] | None = None  # a video item's, in time order
    # the answer's `dim`: the prefix served (a packed binary code is a byte per 8 of them)
    served_dim: int | None = field(default=None, compare=False)

    @property
    def dim(self) -> int:
        return self.served_dim if self.served_dim is not None else len(self.fused)


@dataclass(frozen=True)
class ModelVersion:
    version: str
    status: str  # "ready", "loading", "failed"…
    reason: str | None = None  # why it is not ready
    modalities: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    embedding_dim: int | None = None
    explain: bool = False  # classify(explain=True) has per-modality evidence
    video: dict[str, float] | None = None  # a video model's default segmentation (segment_s, overlap_s) and sampling
    dimensions: list[int] = field(default_factory=list)  # embed's `dimensions` without truncate="force"
    embedding_types: list[str] = field(default_factory=list)  # the types embed can send (int8/uint8 need ranges)
    zero_shot: dict[str, Any] | None = None  # {"calibrated", "temperature", and the fit's figures when calibrated}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    default_version: str | None  # the newest ready version: what a request without version= gets
    versions: list[ModelVersion]
    limits: dict[str, Any]  # max_upload_bytes, max_image_pixels, max_audio_seconds, max_text_chars…


def _labels(row: dict) -> dict:
    """What a classified item and a classified segment share: labels, and explain's evidence."""
    evidence = row.get("evidence")
    return {
        "labels": [Label(str(r["label"]), float(r["score"])) for r in row["labels"]],
        "evidence": None if evidence is None else [_evidence(e) for e in evidence],
        "agreement": row.get("agreement"),
    }


def _span(row: dict) -> dict:
    return {"start_s": float(row["start_s"]), "end_s": float(row["end_s"]), "modalities": list(row["modalities"])}


def classifications(body: dict) -> list[Classification]:
    model, version = body["model"], body["version"]
    out = []
    for row in body["results"]:
        segments = row.get("segments")
        out.append(
            Classification(
                model=model,
                version=version,
                modalities=list(row["modalities"]),
                segments=None if segments is None else [Segment(**_span(s), **_labels(s)) for s in segments],
                **_labels(row),
            )
        )
    return out


def _evidence(row: dict) -> Evidence:
    return Evidence(str(row["modality"]), str(row["label"]), float(row["score"]), bool(row["agrees"]))


def _segment_embedding(row: dict, decode: Callable[[Any], Any]) -> SegmentEmbedding:
    slots = row.get("embeddings", {})
    per_slot = {slot: decode(slots[slot]) for slot in SLOT_ORDER if slot in slots}
    return SegmentEmbedding(**_span(row), fused=decode(row["fused"]), per_slot=per_slot)


def embeddings(body: dict, decode: Callable[[Any], Any] = list) -> list[Embedding]:
    """`decode`: one vector as sent (a list, a base64 string, an object keyed by type) → the result's value."""
    model, version, dim = body["model"], body["version"], body.get("dim")
    return [
        Embedding(
            model=model,
            version=version,
            modalities=list(row["modalities"]),
            fused=decode(row["fused"]),
            per_modality={m: decode(row[m]) for m in SLOT_ORDER if row.get(m) is not None},
            segments=None if row.get("segments") is None else [_segment_embedding(s, decode) for s in row["segments"]],
            served_dim=None if dim is None else int(dim),
        )
        for row in body["results"]
    ]


def model_info(body: dict) -> ModelInfo:
    known = ModelVersion.__dataclass_fields__
    versions = [ModelVersion(**{k: v for k, v in row.items() if k in known}) for row in body["versions"]]
    return ModelInfo(body["name"], body.get("default_version"), versions, dict(body.get("limits", {})))
