"""Errors that carry their HTTP meaning.

Raised anywhere below the HTTP layer (preprocessing, batching, registry) and turned into
`{"error": {"type", "message", "field"}}` with the right status by service/frontend/api/errors.py.
Keeping the status here means preprocessing never imports FastAPI.
"""

from __future__ import annotations

import contextvars
import re
import secrets

# The id an operator matches an answer with its log lines by: the client's X-Request-Id (or gRPC x-request-id)
# when it is a plain token, else one made here. Set per request by the HTTP middleware / gRPC servicer; read where
# a failure is logged and answered (api/errors.py; service/frontend/remote/client.py sends it to the engine, which
# logs it).
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
REQUEST_ID_HEADER = "X-Request-Id"
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # a header value that cannot forge a log line


def new_request_id() -> str:
    """128 random bits as 32 hex digits, as a uuid4's hex but without building a UUID (every request makes one)."""
    return secrets.token_hex(16)


def request_id_from(presented: str | None) -> str:
    """The client's id when it is a plain token of at most 64 characters, else a fresh one."""
    if presented is not None and _ACCEPTED_ID.fullmatch(presented):
        return presented
    return new_request_id()


def current_request_id() -> str:
    """This request's id; one is made (and kept) where no middleware set it (a test calling the plane)."""
    request_id = REQUEST_ID.get()
    if request_id is None:
        request_id = new_request_id()
        REQUEST_ID.set(request_id)
    return request_id


class FusionError(Exception):
    status: int = 400
    type: str = "bad_request"

    def __init__(self, message: str, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers or {}

    def to_dict(self) -> dict:
        return {"error": {"type": self.type, "message": self.message, "field": self.field}}


class BadRequest(FusionError):
    status, type = 400, "bad_request"


class Unauthorized(FusionError):
    status, type = 401, "unauthorized"


class Forbidden(FusionError):
    status, type = 403, "forbidden"


class NotFound(FusionError):
    status, type = 404, "not_found"


class PayloadTooLarge(FusionError):
    status, type = 413, "payload_too_large"


class UnsupportedMediaType(FusionError):
    status, type = 415, "unsupported_media_type"


class InvalidInput(FusionError):
    status, type = 422, "invalid_input"


class QueueFull(FusionError):
    status, type = 429, "queue_full"


class NotReady(FusionError):
    status, type = 503, "not_ready"


class DeadlineExceeded(FusionError):
    status, type = 504, "deadline_exceeded"


class InternalError(FusionError):
    """A failure that is the server's, not the request's (an onnxruntime error, a bug): 500 with the request id
    the log lines carry, never the exception's text (it may name paths or internals)."""

    status, type = 500, "internal_error"

    def __init__(self, request_id: str, where: str = "server"):
        super().__init__(
            f"internal error in the {where} (request id {request_id}); its log has the details under this id",
            headers={REQUEST_ID_HEADER: request_id},
        )
        self.request_id = request_id


class BundleError(Exception):
    """A model version cannot be loaded (bad manifest, tampered file, parity failure…)."""


class ClientDisconnected(FusionError):
    """The caller went away: its queued items were dropped before compute (499, nginx's "client closed")."""

    status, type = 499, "client_closed"

    def __init__(self) -> None:
        super().__init__("client disconnected")
