"""KServe V2 (Open Inference Protocol) over HTTP: health, metadata and infer, on the same data plane as v1.

Errors answer in the protocol's shape, `{"error": "<message>"}`, with v1's status and message (the field
leads the message where the message does not name it). The request cycle is the data plane's
(service/frontend/cycle.py): the door before the body is read, admission after it, the deadline (the one rule,
api/deadline.py: the `x-request-timeout-ms` header, Triton's `timeout` parameter), the client disconnect watch,
per-request metrics (endpoint "v2_infer") and Server-Timing.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from service.errors import FusionError, UnsupportedMediaType
from service.frontend.api.deadline import Deadline, header_timeout_ms, parameter_timeout_ms
from service.frontend.api.infer import disconnect_watch, plane_of, serve_http
from service.frontend.api.v2 import core
from service.frontend.api.v2.rest_codec import HEADER_LENGTH, InferenceRequestBody, decode_request, encode_response
from service.frontend.cycle import Admitted, Call

router = APIRouter(tags=["kserve-v2"])
ENDPOINT = "v2_infer"  # the endpoint label of fusionserve_requests_* for V2 REST inference
V2_ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}, "request_id": {"type": "string"}},
                   "required": ["error"]}  # fmt: skip
V2_ERROR = {"content": {"application/json": {"schema": V2_ERROR_SCHEMA}}}
ERRORS = {status: {"description": meaning, **V2_ERROR} for status, meaning in {
    400: "malformed body", 404: "unknown model or version", 413: "a limit exceeded (named)",
    422: "invalid tensors (the field named)", 429: "at capacity; Retry-After", 503: "not ready",
    504: "deadline exceeded"}.items()}  # fmt: skip


def inline_refs(schema: dict) -> dict:
    """Pydantic's schema with its $defs inlined: openapi_extra is pasted as is, where "#/$defs/…" would dangle."""
    definitions = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: resolve(value) for key, value in node.items()}
        return [resolve(value) for value in node] if isinstance(node, list) else node

    return resolve(schema)


INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": inline_refs(InferenceRequestBody.model_json_schema())},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": f"binary tensor extension: {HEADER_LENGTH} bytes of JSON header, then raw tensors",
            },
        },
    }
}


def v2_error(error: FusionError) -> JSONResponse:
    return JSONResponse({"error": core.error_message(error)}, status_code=error.status, headers=error.headers)


@router.get("/v2", responses=ERRORS)
async def server_metadata() -> dict:
    """Server metadata: name, version and the protocol extensions served."""
    return core.server_metadata()


@router.get("/v2/health/live")
async def server_live() -> dict:
    return {"live": True}


@router.get("/v2/health/ready", responses={503: {"description": "not ready (loading or draining)"}})
async def server_ready(request: Request) -> JSONResponse:
    ready = plane_of(request).ready()
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


def _metadata(request: Request, model: str, version: str | None) -> JSONResponse:
    return JSONResponse(core.model_metadata(plane_of(request), model, version))


@router.get("/v2/models/{model}", responses=ERRORS)
async def model_metadata(request: Request, model: str) -> JSONResponse:
    """Inputs, outputs (with shapes) and, in `parameters`, the labels and embedding dimension."""
    return _metadata(request, model, None)


@router.get("/v2/models/{model}/versions/{version}", responses=ERRORS)
async def model_version_metadata(request: Request, model: str, version: str) -> JSONResponse:
    return _metadata(request, model, version)


def _ready(request: Request, model: str, version: str | None) -> JSONResponse:
    """200 when ready; as the protocol says, a 4xx when not (400, Triton's; 404 for an unknown model)."""
    ready = plane_of(request).model_ready(model, version)
    return JSONResponse({"name": model, "ready": ready}, status_code=200 if ready else 400)


@router.get("/v2/models/{model}/ready", responses=ERRORS | {400: {"description": "not ready"}})
async def model_ready(request: Request, model: str) -> JSONResponse:
    return _ready(request, model, None)


@router.get("/v2/models/{model}/versions/{version}/ready", responses=ERRORS | {400: {"description": "not ready"}})
async def model_version_ready(request: Request, model: str, version: str) -> JSONResponse:
    return _ready(request, model, version)


@router.post("/v2/models/{model}/infer", responses=ERRORS, openapi_extra=INFER_BODY)
async def infer(request: Request, model: str) -> Response:
    """Every row of the input tensors through the model; JSON tensors or Triton's binary extension."""
    return await _infer(request, model, None)


@router.post("/v2/models/{model}/versions/{version}/infer", responses=ERRORS, openapi_extra=INFER_BODY)
async def infer_version(request: Request, model: str, version: str) -> Response:
    return await _infer(request, model, version)


class RestCodec(core.V2Codec):
    """V2 over HTTP: JSON tensors or Triton's binary extension in, the same encoding out."""

    def __init__(self, request: Request):
        super().__init__(plane_of(request).settings)
        self.http = request
        self.deadline = Deadline(time.monotonic(), self.settings.default_deadline_ms)  # from arrival

    def check(self) -> None:
        self.deadline.state(header_timeout_ms(self.http.headers))

    async def read_body(self) -> None:
        self.body = await _read_body(self.http)

    async def read(self, admitted: Admitted) -> tuple[core.InferRequest, float]:
        self.decoded = decode_request(self.body, self.http.headers.get(HEADER_LENGTH))
        self.deadline.state(parameter_timeout_ms(self.decoded.request.parameters))
        return self.decoded.request, self.deadline.at

    def watch(self) -> asyncio.Future:
        return disconnect_watch(self.http)

    def write(self, response: core.InferResponse) -> Response:
        body, headers = encode_response(response, self.decoded)
        return Response(body, headers=headers)


async def _infer(request: Request, model: str, version: str | None) -> Response:
    return await serve_http(request, Call(model, version, ENDPOINT), RestCodec(request))


async def _read_body(request: Request) -> bytes:
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":  # a compressed body would dodge the body limit (a zip bomb)
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding} is not accepted; send the body uncompressed", field="content-encoding"
        )
    return await request.body()
