"""`POST /v1/score`, vLLM's shape: the relevance of pairs, `text_1` against `text_2` — one to one, one to many
(a single text_1 against each text_2) or many to many (the i-th with the i-th) — each side a text, a content array
or a list of them (and vLLM's `{"content": [parts]}`, one item per part). score = the cosine of the two items'
fused embeddings (docs/rerank.md). Every item of both sides runs in the cycle's one backend.run (api/similarity.py).
"""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from service.errors import InvalidInput, current_request_id
from service.frontend.api.openai_embeddings import ERRORS, serve_json
from service.frontend.api.openai_inputs import ContentPart
from service.frontend.api.similarity import (
    BodyCodec,
    BodyOptions,
    Entry,
    cosine,
    entries,
    parse_options,
    text_tokens,
    unit_rows,
)
from service.frontend.api.v2.rest import inline_refs
from service.frontend.cycle import Admitted, Inference

router = APIRouter(tags=["rerank"])
PATH, ENDPOINT = "/v1/score", "score"  # the route, and its endpoint label of the metrics


class ScoreOptions(BodyOptions):
    """Everything but `text_1` and `text_2`: validated before admission."""

    priority: int | None = Field(None, description="accepted for vLLM's clients; ignored (one queue per component)")


class MultiModal(BaseModel):
    content: list[ContentPart] = Field(description="vLLM's: each part is one item")


Side = str | list[ContentPart] | list[str | list[ContentPart]] | MultiModal


class ScoreRequest(ScoreOptions):
    text_1: Side = Field(description="one item (a string or a content array), or a list of them")
    text_2: Side = Field(description="one item, or a list of them: as many as text_1, or any number if text_1 is one")


class ScoreData(BaseModel):
    index: int = Field(description="the pair's position")
    object: Literal["score"] = "score"
    score: float = Field(description="cosine of the pair's fused embeddings, [-1, 1]")


class ScoreUsage(BaseModel):
    prompt_tokens: int = Field(description="text tokens of every item, as the model's tokenizer counts them")
    total_tokens: int


class ScoreResponse(BaseModel):
    id: str = Field(description="the request id (X-Request-Id)")
    object: Literal["list"] = "list"
    created: int = Field(description="Unix time of the answer, as vLLM's")
    model: str = Field(description="name:version of the model version that answered")
    data: list[ScoreData]
    usage: ScoreUsage


REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": inline_refs(ScoreRequest.model_json_schema())}}}}  # fmt: skip


class ScoreCodec(BodyCodec):
    """Both sides in one backend.run: text_1's items, then text_2's; each item once, however many pairs it is in."""

    def shape(self) -> None:
        self.options = parse_options(self.data, ScoreOptions, ("text_1", "text_2"))
        self.first = entries(self.data["text_1"], "text_1", self.settings, many=True)
        self.second = entries(self.data["text_2"], "text_2", self.settings, many=True)
        if len(self.first) not in (1, len(self.second)):  # as vLLM: 1:1, 1:N or N:N
            raise InvalidInput(
                f"text_1 has {len(self.first)} items and text_2 {len(self.second)}: send one text_1 (scored against "
                "every text_2) or as many as text_2 (scored pairwise)",
                field="text_1",
            )

    def to_run(self) -> list[Entry]:
        return [*self.first, *self.second]

    def respond(self, admitted: Admitted, done: Inference) -> dict:
        rows = unit_rows(done.results)
        first, second = rows[: len(self.first)], rows[len(self.first) :]
        pairs = [(0 if len(first) == 1 else index, index) for index in range(len(second))]
        scores = [float(cosine(first[i], second[j])) for i, j in pairs]
        data = [{"index": k, "object": "score", "score": value} for k, value in enumerate(scores)]
        tokens = text_tokens(done.items)
        return {"id": current_request_id(), "object": "list", "created": int(time.time()),
                "model": f"{admitted.model}:{admitted.state.version}", "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip


@router.post(PATH, response_model=ScoreResponse, responses=ERRORS, openapi_extra=REQUEST_BODY)
async def create_score(request: Request) -> Response:
    """Score pairs: cosine of text_1's and text_2's fused embeddings (1:1, 1:N or N:N)."""
    return await serve_json(request, ENDPOINT, ScoreCodec)
