"""Zero-shot, rerank and score answers as dataclasses (docs/zero-shot.md, "The answer"; docs/rerank.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fusionserve_client.results import Evidence, Label


@dataclass(frozen=True)
class ZeroShot:
    """One item against the caller's labels: every label, best first, scores summing to 1."""

    model: str
    version: str
    calibrated: bool  # the bundle has a fitted temperature (else the uncalibrated default divides the cosines)
    temperature: float
    modalities: list[str]
    labels: list[Label]
    evidence: list[Evidence] = field(default_factory=list)  # each present slot's own top label under its template
    agreement: bool | None = None  # every present slot's top label is the fused one

    @property
    def top(self) -> Label:
        return self.labels[0]


@dataclass(frozen=True)
class Ranked:
    """One document of a rerank: its index in the request, its cosine with the query, and (where the bundle has a
    zero-shot temperature) the softmax over the request's documents; `document` with return_documents=True."""

    index: int
    relevance_score: float
    probability: float | None = None
    document: Any = None


@dataclass(frozen=True)
class Rerank:
    id: str  # the request id
    model: str  # "name:version"
    results: list[Ranked]  # best first, top_n of them
    usage: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    """One pair of a score request: the index of the pair and the cosine of its two items."""

    index: int
    score: float


def zero_shots(body: dict) -> list[ZeroShot]:
    head = {
        "model": body["model"],
        "version": body["version"],
        "calibrated": bool(body["calibrated"]),
        "temperature": float(body["temperature"]),
    }
    out = []
    for row in body["results"]:
        evidence = [
            Evidence(str(e["modality"]), str(e["label"]), float(e["score"]), bool(e["agrees"]))
            for e in row.get("evidence") or []
        ]
        labels = [Label(str(r["label"]), float(r["score"])) for r in row["labels"]]
        out.append(ZeroShot(**head, modalities=list(row["modalities"]), labels=labels, evidence=evidence,
                            agreement=row.get("agreement")))  # fmt: skip
    return out


def rerank(body: dict) -> Rerank:
    results = [
        Ranked(
            index=int(r["index"]),
            relevance_score=float(r["relevance_score"]),
            probability=None if r.get("probability") is None else float(r["probability"]),
            document=r.get("document"),
        )
        for r in body["results"]
    ]
    return Rerank(str(body.get("id", "")), str(body["model"]), results, dict(body.get("usage") or {}))


def scores(body: dict) -> list[Score]:
    return [Score(int(r["index"]), float(r["score"])) for r in body["data"]]
