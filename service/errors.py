"""Errors that carry their HTTP meaning.

Raised anywhere below the HTTP layer (preprocessing, batching, registry) and turned into
`{"error": {"type", "message", "field"}}` with the right status by service/api/errors.py.
Keeping the status here means preprocessing never imports FastAPI.
"""

from __future__ import annotations


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


class BundleError(Exception):
    """A model version cannot be loaded (bad manifest, tampered file, parity failure…)."""
