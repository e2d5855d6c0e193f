"""`POST /v1/rerank` (and `/v2/rerank`, where Cohere's ClientV2 sends it) in the Cohere / Jina / TEI shape: a query
and candidate documents, each a text or a content array of any modalities, answered with the documents' relevance
best first — the cosine of fused embeddings in the joint space, and the calibrated probability where the bundle
has a zero-shot temperature (docs/rerank.md). `POST /v1/score` (pairs, vLLM's shape) is api/score.py, served by
the same router. The cycle and the shared pieces: api/similarity.py.
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.errors import current_request_id
from service.frontend.api import score
from service.frontend.api.openai_embeddings import ERRORS, serve_json
from service.frontend.api.openai_inputs import ContentPart
from service.frontend.api.similarity import (
    BodyCodec,
    BodyOptions,
    Entry,
    as_document,
    cosine,
    entries,
    parse_options,
    text_tokens,
    unit_rows,
)
from service.frontend.api.v2.rest import inline_refs
from service.frontend.cycle import Admitted, Inference
from service.zero_shot import probabilities

router = APIRouter(tags=["rerank"])
router.include_router(score.router)
PATHS, ENDPOINT = ("/v1/rerank", "/v2/rerank"), "rerank"  # the routes, and their endpoint label of the metrics


class RerankOptions(BodyOptions):
    """Everything but `query` and `documents`: validated before admission."""

    top_n: int | None = Field(None, ge=1, description="how many results to return (default: every document)")
    return_documents: bool = Field(False, description="echo each result's document (a string as {text})")
    # Cohere's, which its SDK sends only when the caller passes them
    rank_fields: list[str] | None = Field(None, description='only ["text"]: a document object\'s text is ranked')
    max_chunks_per_doc: int | None = Field(None, ge=1, description="accepted; ignored (no chunking)")
    max_tokens_per_doc: int | None = Field(None, ge=1, description="accepted; ignored (the model's text length cuts)")
    priority: int | None = Field(None, description="accepted; ignored (one queue per component)")

    @field_validator("rank_fields")
    @classmethod
    def _text_only(cls, fields: list[str] | None) -> list[str] | None:
        if fields is not None and fields != ["text"]:
            raise ValueError('only ["text"] can be ranked: send a document object\'s content as its text')
        return fields


class CohereDocument(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str = Field(description="ranked; the object's other fields are only echoed with return_documents")


class RerankRequest(RerankOptions):
    query: str | list[ContentPart] = Field(description="a string, or a content array (as /v1/embeddings takes)")
    documents: list[str | list[ContentPart] | CohereDocument] = Field(
        min_length=1, description="the candidates: strings, content arrays or {text} objects"
    )


class RerankResult(BaseModel):
    index: int = Field(description="the document's position in the request")
    relevance_score: float = Field(description="cosine of the query's and the document's fused embeddings, [-1, 1]")
    probability: float | None = Field(
        None, description="softmax over the request's documents of cosine / the bundle's zero-shot temperature; "
        "only where the bundle has one"
    )  # fmt: skip
    document: dict | list | None = Field(None, description="with return_documents: the document (a string as {text})")


class ApiVersion(BaseModel):
    version: str


class BilledUnits(BaseModel):
    search_units: int


class Meta(BaseModel):
    api_version: ApiVersion
    billed_units: BilledUnits


class Usage(BaseModel):
    prompt_tokens: int = Field(description="text tokens of the query and documents, as the model's tokenizer counts")
    total_tokens: int


class RerankResponse(BaseModel):
    id: str = Field(description="the request id (X-Request-Id)")
    model: str = Field(description="name:version of the model version that answered")
    results: list[RerankResult] = Field(description="best first, at most top_n")
    meta: Meta
    usage: Usage


REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": inline_refs(RerankRequest.model_json_schema())}}}}  # fmt: skip
META = {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}  # Cohere's: one search a request


class RerankCodec(BodyCodec):
    """The query and the documents, one backend.run: the query first, then the documents in order."""

    def shape(self) -> None:
        self.options = parse_options(self.data, RerankOptions, ("query", "documents"))
        self.query = entries(self.data["query"], "query", self.settings, many=False)
        self.documents = entries(self.data["documents"], "documents", self.settings, many=True, documents=True)

    def to_run(self) -> list[Entry]:
        return [*self.query, *self.documents]

    def respond(self, admitted: Admitted, done: Inference) -> dict:
        rows = unit_rows(done.results)
        query, documents = rows[0], rows[1:]
        scores = cosine(documents, query)
        order = np.argsort(-scores, kind="stable")[: self.options.top_n]  # ties: the earlier document first
        temperature, calibrated = admitted.state.bundle.manifest.joint_space.zero_shot_temperature()
        probs = probabilities(query[None], documents, temperature)[0] if calibrated else None
        results = []
        for index in order.tolist():
            result = {"index": index, "relevance_score": float(scores[index])}
            if probs is not None:
                result["probability"] = float(probs[index])
            if self.options.return_documents:
                result["document"] = as_document(self.documents[index].value)
            results.append(result)
        tokens = text_tokens(done.items)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        model = f"{admitted.model}:{admitted.state.version}"
        return {"id": current_request_id(), "model": model, "results": results, "meta": META, "usage": usage}


async def rerank(request: Request) -> Response:
    """Rank `documents` by relevance to `query`: cosine in the joint space, best first."""
    return await serve_json(request, ENDPOINT, RerankCodec)


for _path in PATHS:
    router.add_api_route(_path, rerank, methods=["POST"], response_model=RerankResponse, responses=ERRORS,
                         openapi_extra=REQUEST_BODY, name=f"rerank{_path[2]}")  # fmt: skip
