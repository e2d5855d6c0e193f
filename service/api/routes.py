"""HTTP routes only (DESIGN §4): parsing and inference live in api/infer.py and inference/."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from service.api.infer import handle
from service.api.schemas import ERRORS, REQUEST_BODY, ClassifyResponse, EmbedResponse
from service.inference.registry import ModelEntry, VersionState

router = APIRouter()


def _classify_body(top_k: int):
    def respond(state: VersionState, results) -> dict:
        labels = state.bundle.manifest.labels
        out = []
        for result in results:
            order = result.probabilities.argsort()[::-1][:top_k]
            out.append(
                {
                    "modalities": result.modalities,
                    "labels": [{"label": labels[i], "score": float(result.probabilities[i])} for i in order],
                }
            )
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
    request: Request, model: str, top_k: int = Query(5, ge=1, le=1000), version: str | None = None
) -> JSONResponse:
    """Classify one item (multipart: fields image, audio, text) or many (JSON `{"inputs": [...]}`)."""
    top_k = min(top_k, request.app.state.settings.max_top_k)
    return await handle(request, model, version, "classify", _classify_body(top_k))


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
