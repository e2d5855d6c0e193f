"""OpenAI-compatible embeddings, `POST /v1/embeddings`, on the same data plane as v1: what the `openai` SDK,
LangChain, LlamaIndex and LiteLLM send, plus multimodal content arrays (service/frontend/api/openai_inputs.py).

The request names its model in the body, so the JSON is parsed first; admission (404 / 429) then comes before
any media is decoded or fetched. The cycle is the data plane's (service/frontend/cycle.py): the deadline (the one
rule, api/deadline.py: from the request's arrival, its body's reading included, as for every protocol), the
disconnect watch, per-request metrics (endpoint "openai_embeddings"), Server-Timing and orjson. Errors answer
in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with v1's status and message (param = the
field).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.embedding_types import EMBEDDING_TYPES
from service.errors import BadRequest, FusionError, InvalidInput
from service.frontend.api.deadline import Deadline, header_timeout_ms
from service.frontend.api.embedding_format import EmbeddingFormat, resolve
from service.frontend.api.infer import OrjsonResponse, disconnect_watch, plane_of, serve_http
from service.frontend.api.inputs import field_path
from service.frontend.api.openai_inputs import ContentPart, parse_input
from service.frontend.api.schemas import Vector
from service.frontend.api.segments import embed_segments
from service.frontend.api.v2.rest import inline_refs
from service.frontend.cycle import Admitted, Call, Decoded, Inference
from service.frontend.fetch import Fetcher
from service.items import ItemResult
from service.manifest import Manifest

router = APIRouter(tags=["openai"])
PATH, ENDPOINT = "/v1/embeddings", "openai_embeddings"  # the route, and its endpoint label of fusionserve_requests_*


class EmbeddingOptions(BaseModel):
    """Everything but `input`: validated before admission, which needs the model."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, description="a served model (bundle) name, or name:version")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: each embedding as little-endian bytes (float32 for float), base64-encoded"
    )
    dimensions: int | None = Field(
        None, ge=1, description="a prefix of the joint space, re-normalised: one of the dims GET /v1/models/{model} "
        "lists (trained for), or any up to embedding_dim with truncate=force",
    )  # fmt: skip
    # not OpenAI's (docs/protocols.md, "Dimensions and encodings"); the SDK sends them with extra_body
    truncate: Literal["force"] | None = Field(None, description="force: dimensions the model was not trained for")
    embedding_types: list[Literal[EMBEDDING_TYPES]] | None = Field(
        None, min_length=1, description="Cohere's: each embedding becomes an object keyed by these types"
    )
    user: str | None = Field(None, description="accepted for compatibility; ignored")
    # not OpenAI's: a video_url item's segmentation (the SDK sends them with extra_body)
    segment_s: float | None = Field(None, description="video: segment length in seconds (default: the model's)")
    overlap_s: float | None = Field(None, description="video: overlap of consecutive segments (default: the model's)")

    def video_options(self) -> dict:
        return {name: getattr(self, name) for name in ("segment_s", "overlap_s") if getattr(self, name) is not None}


class EmbeddingRequest(EmbeddingOptions):
    input: str | list[str | list[ContentPart]] = Field(
        description="one item per string or content array; a content array holds at most one text, "
        "image_url, input_audio and video_url part, and gets their fused embedding"
    )


class SegmentEmbedding(BaseModel):
    start_s: float
    end_s: float
    modalities: list[str] = Field(description="the video slots this segment had: video_frames, video_audio")
    embedding: Vector = Field(description="the segment's fused embedding, in encoding_format")


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Vector = Field(
        description="the item's fused joint-space embedding (L2-normalised); an object keyed by type with "
        "embedding_types"
    )
    segments: list[SegmentEmbedding] | None = Field(None, description="a video_url item's, per segment")


class Usage(BaseModel):
    prompt_tokens: int = Field(description="text tokens, as the model's tokenizer counts them (no padding)")
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str = Field(description="name:version of the model version that answered")
    usage: Usage


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    request_id: str | None = None  # the answer's X-Request-Id (api/request_id.py); OpenAI's SDK ignores extra keys


class OpenAIError(BaseModel):
    error: OpenAIErrorBody


ERRORS = {status: {"model": OpenAIError, "description": meaning} for status, meaning in {
    400: "malformed body", 404: "unknown model or version", 413: "a limit exceeded (named)",
    422: "invalid input (the param named: dimensions or embedding_types the model lacks too)",
    429: "at capacity; Retry-After", 503: "not ready", 504: "deadline exceeded"}.items()}  # fmt: skip
REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": inline_refs(EmbeddingRequest.model_json_schema())}}}}  # fmt: skip
ERROR_TYPES = {
    401: "authentication_error",
    429: "rate_limit_error",
    499: "client_closed",
}  # else invalid_request_error / server_error
ERROR_CODES = {"queue_full": "rate_limit_exceeded"}  # else v1's error type; model_not_found: a 404 naming the model


def openai_error(error: FusionError) -> OrjsonResponse:
    kind = ERROR_TYPES.get(error.status, "invalid_request_error" if error.status < 500 else "server_error")
    param = "model" if error.field == "version" else error.field  # the version is part of `model` here
    model_missing = error.status == 404 and param == "model"  # not a route's 404 (no such path)
    code = "model_not_found" if model_missing else ERROR_CODES.get(error.type, error.type)
    body = {"error": {"message": error.message, "type": kind, "param": param, "code": code}}
    return OrjsonResponse(body, status_code=error.status, headers=error.headers)


async def read_object(request: Request) -> tuple[dict, FusionError | None]:
    """The JSON object body, or ({}, the error to answer) once per-request accounting has started."""
    try:
        data = orjson.loads(await request.body())
    except FusionError as error:  # the body limit, crossed by a chunked upload
        return {}, error
    except orjson.JSONDecodeError as error:
        return {}, BadRequest(f"body is not valid JSON: {error}", field="body")
    if not isinstance(data, dict):
        return {}, BadRequest("body must be a JSON object", field="body")
    return data, None


def split_model(model: object) -> tuple[str, str | None]:
    """`tiny:2` → ("tiny", "2"); `tiny` → ("tiny", None), the default version."""
    if not isinstance(model, str):
        return "", None
    name, colon, version = model.partition(":")
    return name, version if colon else None


def parse_options(data: dict) -> EmbeddingOptions:
    if "input" not in data:
        raise InvalidInput("input: Field required", field="input")
    try:
        return EmbeddingOptions.model_validate({key: value for key, value in data.items() if key != "input"})
    except ValidationError as error:
        first = error.errors()[0]
        field = field_path(first["loc"]) or "body"
        raise InvalidInput(f"{field}: {first['msg']}", field=field) from None


def _segments(result: ItemResult, written: EmbeddingFormat) -> dict:
    if result.segments is None:
        return {}
    rows = embed_segments(result.segments, written.rows)
    return {"segments": [{"start_s": r["start_s"], "end_s": r["end_s"], "modalities": r["modalities"],
                          "embedding": r["fused"]} for r in rows]}  # fmt: skip


def embedding_format(options: EmbeddingOptions, manifest: Manifest) -> EmbeddingFormat:
    """The request's dimensions and encodings for the model; a 422 naming the param otherwise."""
    return resolve(manifest, dimensions=options.dimensions, truncate=options.truncate,
                   types=options.embedding_types, encoding_format=options.encoding_format)  # fmt: skip


def respond(
    options: EmbeddingOptions, admitted: Admitted, done: Inference, written: EmbeddingFormat | None = None
) -> dict:
    written = written or embedding_format(options, admitted.state.bundle.manifest)
    tokens = sum(int(item.arrays["text"][1].sum()) for item in done.items if "text" in item.arrays)  # mask: no pads
    fused = written.rows([result.fused for result in done.results])
    data = [
        {"object": "embedding", "index": index, "embedding": fused[index]} | _segments(result, written)
        for index, result in enumerate(done.results)
    ]
    model = f"{admitted.model}:{admitted.state.version}"
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


class JsonBodyCodec:
    """A JSON body that names its model, in the request cycle (service/frontend/cycle.py): read before the cycle
    (serve_json), so admission can judge the model it names; `shape` checks the options before admission, a
    subclass's decode reads the media after it. /v1/embeddings, /v1/rerank and /v1/score."""

    def __init__(self, request: Request, arrived: float, data: dict, malformed: FusionError | None):
        self.http, self.data, self.malformed = request, data, malformed
        self.settings = plane_of(request).settings
        self.deadline = Deadline(arrived, self.settings.default_deadline_ms)

    def check(self) -> None:
        if self.malformed is not None:
            raise self.malformed
        self.deadline.state(header_timeout_ms(self.http.headers))
        self.shape()

    def shape(self) -> None:
        raise NotImplementedError

    async def read_body(self) -> None:
        pass  # read before the cycle (serve_json): the model is named in it

    def watch(self) -> asyncio.Future:
        return disconnect_watch(self.http)


async def serve_json(request: Request, endpoint: str, codec: Callable[..., JsonBodyCodec]) -> Response:
    """Read the body, then run it through the data plane's cycle; errors leave as FusionError, which the app's
    handlers shape as OpenAI's (api/refusals.py ERROR_SHAPES)."""
    arrived = time.monotonic()  # before the body, as every protocol's deadline
    data, malformed = await read_object(request)
    name, version = split_model(data.get("model"))
    return await serve_http(request, Call(name, version, endpoint), codec(request, arrived, data, malformed))


class OpenAICodec(JsonBodyCodec):
    """`/v1/embeddings` in the request cycle: options checked before admission, media after it."""

    def shape(self) -> None:
        self.options = parse_options(self.data)

    async def decode(self, admitted: Admitted) -> Decoded:
        # checked for the model before any input is decoded or fetched
        self.written = embedding_format(self.options, admitted.state.bundle.manifest)
        parsed = parse_input(self.data["input"], self.settings, self.options.video_options())
        await Fetcher(self.settings, self.deadline.at).fetch_all(parsed.remotes)
        return Decoded(parsed.items, self.deadline.at)

    def encode(self, admitted: Admitted, done: Inference) -> Response:
        return OrjsonResponse(respond(self.options, admitted, done, self.written))


@router.post(PATH, response_model=EmbeddingResponse, responses=ERRORS, openapi_extra=REQUEST_BODY)
async def create_embeddings(request: Request) -> Response:
    """Embeddings for a string, a list of strings, or content arrays (text, image_url, input_audio, video_url)."""
    return await serve_json(request, ENDPOINT, OpenAICodec)
