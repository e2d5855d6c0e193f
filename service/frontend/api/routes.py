"""v1 HTTP routes (docs/protocols.md, v1): each calls only the data plane (frontend/dataplane.py), via api/infer.py."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.frontend.api.infer import V1Codec, plane_of, serve_http
from service.frontend.api.schemas import ERRORS, REQUEST_BODY, ClassifyResponse, EmbedResponse
from service.frontend.cycle import Call, Inference
from service.items import ItemResult
from service.manifest import MODALITIES
from service.models import VersionState

router = APIRouter()


def _ranking(probabilities: np.ndarray) -> np.ndarray:
    return probabilities.argsort()[::-1]  # label indices, best first


def _evidence(result: ItemResult, labels: list[str], fused_top: int) -> dict:
    """Each present modality's own top label vs the fused one (classify?explain=true)."""
    evidence = []
    for modality in (m for m in MODALITIES if m in result.modality_probabilities):
        probabilities = result.modality_probabilities[modality]  # [C]
        top = int(_ranking(probabilities)[0])
        evidence.append(
            {"modality": modality, "label": labels[top], "score": float(probabilities[top]), "agrees": top == fused_top}
        )
    return {"evidence": evidence, "agreement": all(e["agrees"] for e in evidence)}


def _classify_body(top_k: int, explain: bool):
    def respond(state: VersionState, done: Inference) -> dict:
        labels = state.bundle.manifest.labels
        out = []
        for result in done.results:
            order = _ranking(result.probabilities)
            row = {
                "modalities": result.modalities,
                "labels": [{"label": labels[i], "score": float(result.probabilities[i])} for i in order[:top_k]],
            }
            out.append((row | _evidence(result, labels, int(order[0]))) if explain else row)
        return {"model": state.bundle.manifest.name, "version": state.version, "results": out}

    return respond


def _embed_body(state: VersionState, done: Inference) -> dict:
    out = []
    for result in done.results:
        row = {"modalities": result.modalities, "fused": result.fused}  # numpy: orjson writes it directly
        row.update(result.embeddings)
        out.append(row)
    return {
        "model": state.bundle.manifest.name,
        "version": state.version,
        "dim": state.bundle.manifest.embedding_dim,
        "results": out,
    }


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
) -> JSONResponse:
    """Classify one item (multipart: fields image, audio, text) or many (JSON `{"inputs": [...]}`)."""
    top_k = min(top_k, plane_of(request).settings.max_top_k)
    codec = V1Codec(request, _classify_body(top_k, explain))
    return await serve_http(request, Call(model, version, "classify", explain), codec)


@router.post(
    "/v1/models/{model}/embed",
    response_model=EmbedResponse,
    responses=ERRORS,
    openapi_extra=REQUEST_BODY,
    tags=["inference"],
)
async def embed(request: Request, model: str, version: str | None = None) -> JSONResponse:
    """Joint-space embeddings: fused and per present modality (L2-normalised)."""
    return await serve_http(request, Call(model, version, "embed"), V1Codec(request, _embed_body))


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
