"""HTTP routes only (DESIGN §4): parsing and inference live in api/infer.py and inference/."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from service.api.infer import handle
from service.api.schemas import ERRORS, REQUEST_BODY, ClassifyResponse, EmbedResponse
from service.errors import InvalidInput
from service.inference.pipeline import ItemResult
from service.inference.registry import ModelEntry, VersionState
from service.manifest import MODALITIES

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


def require_explainable(state: VersionState) -> None:
    """Before the body is read: explain needs the served version's per-modality heads."""
    if not state.bundle.manifest.fusion.has_modality_logits:
        raise InvalidInput(
            f"model {state.bundle.manifest.name!r} version {state.version!r} has no per-modality heads; "
            "explain=true is unavailable for it",
            field="explain",
        )


def _classify_body(top_k: int, explain: bool):
    def respond(state: VersionState, results: list[ItemResult]) -> dict:
        labels = state.bundle.manifest.labels
        out = []
        for result in results:
            order = _ranking(result.probabilities)
            row = {
                "modalities": result.modalities,
                "labels": [{"label": labels[i], "score": float(result.probabilities[i])} for i in order[:top_k]],
            }
            out.append((row | _evidence(result, labels, int(order[0]))) if explain else row)
        return {"model": state.bundle.manifest.name, "version": state.version, "results": out}

    return respond


def _embed_body(state: VersionState, results) -> dict:
    out = []
    for result in results:
        row = {"modalities": result.modalities, "fused": result.fused.tolist()}
        row.update({m: vector.tolist() for m, vector in result.embeddings.items()})
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
    top_k = min(top_k, request.app.state.settings.max_top_k)
    admit = require_explainable if explain else None
    return await handle(request, model, version, "classify", _classify_body(top_k, explain), admit=admit)


@router.post(
    "/v1/models/{model}/embed",
    response_model=EmbedResponse,
    responses=ERRORS,
    openapi_extra=REQUEST_BODY,
    tags=["inference"],
)
async def embed(request: Request, model: str, version: str | None = None) -> JSONResponse:
    """Joint-space embeddings: fused and per present modality (L2-normalised)."""
    return await handle(request, model, version, "embed", _embed_body)


def _version_summary(state: VersionState) -> dict:
    summary = {"version": state.version, "status": state.status, "reason": state.reason}
    if state.bundle is not None:
        manifest = state.bundle.manifest
        summary.update(
            provider=state.bundle.provider,
            load_seconds=state.load_seconds,
            golden_max_error=state.golden_max_error,
            modalities=manifest.modalities(),
            labels=manifest.labels,
            embedding_dim=manifest.embedding_dim,
            fusion=manifest.fusion.strategy,
            explain=manifest.fusion.has_modality_logits,
            metrics=manifest.metrics,
        )
    return summary


def _model_summary(request: Request, entry: ModelEntry) -> dict:
    settings = request.app.state.settings
    ready = entry.ready_versions()
    limits = {
        "max_upload_bytes": settings.max_upload_bytes,
        "max_image_pixels": settings.max_image_pixels,
        "max_audio_seconds": settings.max_audio_seconds,
        "max_text_chars": settings.max_text_chars,
        "max_items_per_request": settings.max_items_per_request,
    }
    return {
        "name": entry.name,
        "default_version": ready[0].version if ready else None,
        "limits": limits,
        "versions": [_version_summary(v) for v in entry.versions.values()],
    }


@router.get("/v1/models", tags=["models"])
async def list_models(request: Request) -> dict:
    return {"models": [_model_summary(request, e) for e in request.app.state.registry.models.values()]}


@router.get("/v1/models/{model}", tags=["models"])
async def describe_model(request: Request, model: str) -> dict:
    return _model_summary(request, request.app.state.registry.entry(model))


@router.get("/healthz", tags=["health"])
async def healthz() -> dict:
    return {"status": "alive"}


@router.get("/readyz", tags=["health"])
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    ready = state.registry.all_ready() and not state.draining
    body = {
        "ready": ready,
        "draining": state.draining,
        "providers_requested": state.settings.providers,
        "models": {
            e.name: {
                v.version: {
                    "status": v.status,
                    "provider": v.bundle.provider if v.bundle else None,
                    "reason": v.reason,
                }
                for v in e.versions.values()
            }
            for e in state.registry.models.values()
        },
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", tags=["health"])
async def metrics(request: Request) -> Response:
    payload, content_type = request.app.state.metrics.render()
    return Response(payload, media_type=content_type)
