"""Triton's model repository extension over HTTP: the index, and explicit load / unload of a model.

    GET|POST /v2/repository/index                  [{"name", "version", "state", "reason"}], body {"ready": true}
    POST     /v2/repository/models/{model}/load    scan the model's directory now; load what is new
    POST     /v2/repository/models/{model}/unload  drain and unload every version; the name 404s after

The index is behind the API key like every non-probe path (api/middleware.py). Load and unload change what is
served only with FUSIONSERVE_MODEL_CONTROL=explicit, and then take the admin key (api/model_control.py). Errors
in the V2 shape `{"error": "..."}`. Load and unload answer once done (the load verified and warm, the unload
drained), as Triton's do.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError

from service.backend import Repository
from service.errors import BadRequest
from service.frontend.api.inputs import field_path
from service.frontend.api.v2.rest import V2_ERROR, inline_refs

router = APIRouter(tags=["model-repository"])
ERRORS = {status: {"description": meaning, **V2_ERROR} for status, meaning in {
    400: "bad body, or the load failed (each failed version and its reason named)",
    404: "no such model directory, or not served here"}.items()}  # fmt: skip
CONTROL_ERRORS = ERRORS | {status: {"description": meaning, **V2_ERROR} for status, meaning in {
    401: "missing or wrong admin key (FUSIONSERVE_ADMIN_KEY)",
    403: "model control is off (FUSIONSERVE_MODEL_CONTROL=none, the default)"}.items()}  # fmt: skip


class IndexRow(BaseModel):
    name: str
    version: str
    state: str  # READY | LOADING | UNLOADING | UNAVAILABLE
    reason: str


class ModelVersions(BaseModel):
    name: str
    versions: list[IndexRow]


class IndexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ready: StrictBool = False  # true: only the versions that are READY


class LoadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, Any] = {}


class UnloadParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unload_dependents: StrictBool = False  # accepted and moot: no model here depends on another


class UnloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parameters: UnloadParameters = UnloadParameters()


def optional_body(schema: type[BaseModel]) -> dict:
    content = {"application/json": {"schema": inline_refs(schema.model_json_schema())}}
    return {"requestBody": {"required": False, "content": content}}


def _repository(request: Request) -> Repository:
    return request.app.state.context.repository


async def _parse(request: Request, schema: type[BaseModel]) -> Any:
    raw = await request.body()
    if not raw.strip():  # tritonclient sends the index request with an empty body
        return schema()
    try:
        return schema.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"body is not valid JSON: {error}", field="body") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = field_path(first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}", field=where) from None


def _model_rows(rows: list[dict], model: str) -> dict:
    return {"name": model, "versions": [row for row in rows if row["name"] == model]}


@router.get("/v2/repository/index", responses=ERRORS, response_model=list[IndexRow])
@router.post(
    "/v2/repository/index", responses=ERRORS, response_model=list[IndexRow], openapi_extra=optional_body(IndexRequest)
)
async def repository_index(request: Request) -> JSONResponse:
    """Every model version on disk or loaded: state READY, LOADING, UNLOADING or UNAVAILABLE, and why."""
    options = await _parse(request, IndexRequest)
    return JSONResponse(await _repository(request).index(ready_only=options.ready))


@router.post(
    "/v2/repository/models/{model}/load",
    responses=CONTROL_ERRORS,
    response_model=ModelVersions,
    openapi_extra=optional_body(LoadRequest),
)
async def load_model(request: Request, model: str) -> JSONResponse:
    """Load the model's new versions now (failed ones retried); 400 naming each version that failed."""
    repository = _repository(request)
    options = await _parse(request, LoadRequest)
    if options.parameters:  # Triton's config / file: overrides
        name = next(iter(options.parameters))
        raise BadRequest(
            f"parameters.{name}: loading from a configuration or files sent in the request is not supported; "
            f"put a version directory under {repository.settings.model_dir}/{model}/",
            field=f"parameters.{name}",
        )
    failed = await repository.load(model)
    if failed:
        reasons = "; ".join(f"version {s.version!r}: {s.reason}" for s in failed)
        raise BadRequest(f"failed to load model {model!r}: {reasons}", field="model")
    return JSONResponse(_model_rows(await repository.index(), model))


@router.post(
    "/v2/repository/models/{model}/unload",
    responses=CONTROL_ERRORS,
    response_model=ModelVersions,
    openapi_extra=optional_body(UnloadRequest),
)
async def unload_model(request: Request, model: str) -> JSONResponse:
    """Stop routing to the model now, let admitted requests finish, then unload it."""
    repository = _repository(request)
    await _parse(request, UnloadRequest)
    await repository.unload(model)
    return JSONResponse(_model_rows(await repository.index(), model))
