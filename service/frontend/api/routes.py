"""v1 HTTP routes (docs/protocols.md, v1): each calls only the data plane (frontend/dataplane.py), via api/infer.py."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.frontend.api.embed import EmbedCodec, EmbedQuery, embed_body
from service.frontend.api.infer import V1Codec, plane_of, serve_http
from service.frontend.api.schemas import ERRORS, REQUEST_BODY, ClassifyResponse, EmbedResponse
from service.frontend.api.segments import classify_segments, evidence, ranking, top_labels
from service.frontend.cycle import Call, Inference
from service.models import VersionState

router = APIRouter()
# a video item's segmentation (VideoModality.preprocess_of checks them against the model: a 422 naming the option)
SEGMENT_S = Query(None, description="video: segment length in seconds (default: the model's)")
OVERLAP_S = Query(None, description="video: overlap between consecutive segments in seconds (default: the model's)")
# embed's dimensions and encodings, checked against the model at admission (api/embedding_format.py): a 422 names them
DIMENSIONS = Query(None, ge=1, description="a prefix of the joint space, re-normalised: one of the model's dimensions")
TRUNCATE = Query(None, description="force: any dimensions up to the model's, trained for or not")
EMBEDDING_TYPES = Query(None, description="float, int8, uint8, binary, ubinary (comma-separated or repeated): each "
                        "embedding becomes an object keyed by type")  # fmt: skip
ENCODING_FORMAT = Query("float", description="base64: each embedding's little-endian bytes, base64-encoded")


def video_options(segment_s: float | None, overlap_s: float | None) -> dict:
    """The request options every item carries (RawItem.options); absent ones are left to the model's defaults."""
    return {name: value for name, value in (("segment_s", segment_s), ("overlap_s", overlap_s)) if value is not None}


def _classify_body(top_k: int, explain: bool):
    def respond(state: VersionState, done: Inference) -> dict:
        labels = state.bundle.manifest.labels
        out = []
        for result in done.results:
            row = {"modalities": result.modalities, "labels": top_labels(result.probabilities, labels, top_k)}
            if explain:
                row |= evidence(result.modality_probabilities, labels, int(ranking(result.probabilities)[0]))
            if result.segments is not None:
                row["segments"] = classify_segments(result, labels, top_k, explain)
            out.append(row)
        return {"model": state.bundle.manifest.name, "version": state.version, "results": out}

    return respond


def _embed_body(state: VersionState, done: Inference) -> dict:
    """embed's body for a request without options (the full dim, floats): api/embed.py writes it."""
    return embed_body(state, done)


@router.post(
    "/v1/models/{model}/classify",
    response_model=ClassifyResponse,
    responses=ERRORS,
    openapi_extra=REQUEST_BODY,
    tags=["inference"],
)
async def classify(
    request: Request,
    model: str,
    top_k: int = Query(5, ge=1, le=1000),
    version: str | None = None,
    explain: bool = Query(False, description="add each present modality's own top label and an agreement flag"),
    segment_s: float | None = SEGMENT_S,
    overlap_s: float | None = OVERLAP_S,
) -> JSONResponse:
    """Classify one item (multipart: fields image, audio, text, video) or many (JSON `{"inputs": [...]}`); a video
    item answers per segment too."""
    top_k = min(top_k, plane_of(request).settings.max_top_k)
    codec = V1Codec(request, _classify_body(top_k, explain), video_options(segment_s, overlap_s))
    return await serve_http(request, Call(model, version, "classify", explain), codec)


@router.post(
    "/v1/models/{model}/embed",
    response_model=EmbedResponse,
    responses=ERRORS,
    openapi_extra=REQUEST_BODY,
    tags=["inference"],
)
async def embed(
    request: Request, model: str, version: str | None = None,
    segment_s: float | None = SEGMENT_S, overlap_s: float | None = OVERLAP_S,
    dimensions: int | None = DIMENSIONS, truncate: Literal["force"] | None = TRUNCATE,
    embedding_types: list[str] | None = EMBEDDING_TYPES, encoding_format: Literal["float", "base64"] = ENCODING_FORMAT,
) -> JSONResponse:  # fmt: skip
    """Joint-space embeddings: fused and per present slot (L2-normalised); a video item's per segment too; in the
    dimensions and encodings asked for (docs/protocols.md, "Dimensions and encodings")."""
    query = EmbedQuery(dimensions, truncate, embedding_types, encoding_format)
    codec = EmbedCodec(request, query, video_options(segment_s, overlap_s))
    return await serve_http(request, Call(model, version, "embed"), codec)


@router.get("/v1/models", tags=["models"])
async def list_models(request: Request) -> dict:
    return {"models": plane_of(request).models()}


@router.get("/v1/models/{model}", tags=["models"])
async def describe_model(request: Request, model: str) -> dict:
    return plane_of(request).describe(model)


@router.get("/healthz", tags=["health"])
async def healthz() -> dict:
    return {"status": "alive"}


@router.get("/readyz", tags=["health"])
async def readyz(request: Request) -> JSONResponse:
    plane = plane_of(request)
    return JSONResponse(plane.readiness(), status_code=200 if plane.ready() else 503)


# The declared media type is the constant the registry renders with (service/metrics.py), so the document
# cannot drift from the header when prometheus_client moves its exposition format on (0.0.4 → 1.0.0).
METRICS_RESPONSES = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
    }
}


@router.get("/metrics", tags=["health"], response_class=Response, responses=METRICS_RESPONSES)
async def metrics(request: Request) -> Response:
    """Every fusionserve_* series (README, "Metrics"), for Prometheus to scrape."""
    payload, content_type = plane_of(request).metrics.render()
    return Response(payload, media_type=content_type)
