"""v1 `POST /v1/models/{model}/embed`'s answer (docs/protocols.md, v1 and "Dimensions and encodings"): the
fused and per-slot embeddings of each item (and a video's per segment), in the dimensions and encodings the
query asked for, resolved against the admitted model before any item is decoded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import Request

from service.frontend.api.embedding_format import EmbeddingFormat, resolve
from service.frontend.api.infer import V1Codec
from service.frontend.api.segments import embed_segments
from service.frontend.cycle import Admitted, Decoded, Inference
from service.models import VersionState


@dataclass(frozen=True)
class EmbedQuery:
    """embed's query options; `embedding_types` as given (each value may hold several, comma-separated)."""

    dimensions: int | None = None
    truncate: str | None = None
    embedding_types: Sequence[str] | None = None
    encoding_format: str = "float"

    def types(self) -> list[str] | None:
        if self.embedding_types is None:
            return None
        return [kind.strip() for value in self.embedding_types for kind in value.split(",")]


def embed_body(state: VersionState, done: Inference, written: EmbeddingFormat | None = None) -> dict:
    """{"model", "version", "dim", "results": [{"modalities", "fused", <slot>: …, "segments"?}]}; without
    `written`, what a request without options gets (the full dim, floats)."""
    manifest = state.bundle.manifest
    written = written or EmbeddingFormat(manifest.embedding_dim, manifest.embedding_dim)
    results = done.results
    fused = written.rows([result.fused for result in results])
    slots = [(index, slot) for index, result in enumerate(results) for slot in result.embeddings]
    by_slot = dict(zip(slots, written.rows([results[i].embeddings[slot] for i, slot in slots]), strict=True))
    out = []
    for index, result in enumerate(results):
        row = {"modalities": result.modalities, "fused": fused[index]}
        row.update({slot: by_slot[index, slot] for slot in result.embeddings})  # a video's slots are the clip's
        if result.segments is not None:
            row["segments"] = embed_segments(result.segments, written.rows)
        out.append(row)
    return {"model": manifest.name, "version": state.version, "dim": written.dim, "results": out}


class EmbedCodec(V1Codec):
    """v1's codec, with the query's dimensions and encodings checked for the model at admission."""

    def __init__(self, request: Request, query: EmbedQuery, options: dict):
        super().__init__(request, self._respond, options)
        self.query = query

    async def decode(self, admitted: Admitted) -> Decoded:
        q = self.query
        self.written = resolve(admitted.state.bundle.manifest, dimensions=q.dimensions, truncate=q.truncate,
                               types=q.types(), encoding_format=q.encoding_format)  # fmt: skip
        return await super().decode(admitted)

    def _respond(self, state: VersionState, done: Inference) -> dict:
        return embed_body(state, done, self.written)
