"""Every error leaves as JSON in the shape of the path's protocol (v1's {"error": {"type", "message", "field",
"request_id"}} by
default; ERROR_SHAPES of api/refusals.py) with the status of docs/bad-input.md: FusionErrors, request-validation errors,
Starlette's own 404 / 405 (no such route, a method the route has not) and any unexpected exception (500)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from service.errors import FusionError, InternalError, InvalidInput, current_request_id
from service.frontend.api.middleware import ErrorShapes, route_path, shape_for
from service.frontend.api.request_id import with_request_id

log = logging.getLogger(__name__)
HTTP_TYPES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(
    status: int, type_: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"type": type_, "message": message, "field": field, "request_id": current_request_id()}}
    return JSONResponse(body, status_code=status, headers=headers)


def naming_request_id(response: Response, request_id: str) -> Response:
    """`response` (a protocol's JSON error) with the request id in its body. For the last-resort 500, which
    Starlette answers outside the app's RequestIdMiddleware (that names it in every other error body)."""
    body = with_request_id(bytes(response.body), request_id)
    if body is None:
        return response
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    return Response(body, status_code=response.status_code, headers=headers)


def _handlers(shapes: ErrorShapes):
    """FusionError, request-validation errors and Starlette's HTTPException in the shape of the path's protocol
    (v1's by default), so a protocol's routes raise like v1's and never catch to re-shape."""

    async def fusion_error(request: Request, error: FusionError) -> Response:
        shape = shape_for(route_path(request.scope), shapes)
        if shape is not None:
            return shape(error)
        return error_response(error.status, error.type, error.message, error.field, error.headers)

    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0]
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
        field = ".".join(location) or None
        return await fusion_error(request, InvalidInput(f"{field or 'request'}: {first.get('msg')}", field=field))

    async def http_error(request: Request, error: HTTPException) -> Response:
        return await fusion_error(request, HttpError(error))

    return fusion_error, validation_error, http_error


class HttpError(FusionError):
    """Starlette's HTTPException (its router's 404 and 405, a static file's) as a FusionError, to be shaped."""

    def __init__(self, error: HTTPException):
        super().__init__(str(error.detail), headers=dict(error.headers or {}))
        self.status = error.status_code
        self.type = HTTP_TYPES.get(error.status_code, "bad_request" if error.status_code < 500 else "server_error")


def _unexpected_error(shapes: ErrorShapes):
    """Anything else escaping a route (an onnxruntime RuntimeError, a bug): 500 in the path's protocol shape,
    naming the request id that the log line (with the traceback) carries; the exception's text stays in the log."""

    async def unexpected_error(request: Request, error: Exception) -> Response:
        internal = InternalError(current_request_id())
        request.app.state.context.metrics.internal_errors.labels("http", "unexpected").inc()
        log.error("request id %s: unexpected error on %s %s", internal.request_id, request.method,
                  request.url.path, exc_info=error)  # fmt: skip
        shape = shape_for(route_path(request.scope), shapes)
        if shape is not None:
            return naming_request_id(shape(internal), internal.request_id)
        return error_response(500, internal.type, internal.message, None, internal.headers)

    return unexpected_error


def install_error_handlers(app: FastAPI, shapes: ErrorShapes) -> None:
    fusion_error, validation_error, http_error = _handlers(shapes)
    app.add_exception_handler(FusionError, fusion_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, _unexpected_error(shapes))
