"""The server's errors as typed exceptions: `{"error": {"type", "message", "field"}}` (OpenAI's shape: `param`
for the field) + status + Retry-After."""

from __future__ import annotations

import email.utils
import time

import httpx


class FusionServeError(Exception):
    """An answer other than 2xx (or no answer at all: `status` is None for transport failures).

    `type`, `message` and `field` are the server's error body (docs/bad-input.md: the field names what was wrong,
    the message names the limit); `retry_after` is the Retry-After header in seconds, when there is one.
    """

    def __init__(
        self,
        status: int | None,
        type: str,
        message: str,
        field: str | None = None,
        retry_after: float | None = None,
    ):
        where = f" (field {field})" if field else ""
        super().__init__(f"{status or 'no answer'} {type}{where}: {message}")
        self.status, self.type, self.message, self.field, self.retry_after = status, type, message, field, retry_after


class ConnectionFailed(FusionServeError):
    """The server could not be reached, or did not answer within the timeout."""


class BadRequestError(FusionServeError):
    """400: a malformed body (bad JSON, bad multipart, too many form parts…)."""


class AuthenticationError(FusionServeError):
    """401: the server has an API key and this client sent none or a wrong one."""


class NotFoundError(FusionServeError):
    """404: unknown model or version."""


class PayloadTooLargeError(FusionServeError):
    """413: the body, a field, an image's pixel count or an audio clip's length is over a limit."""


class UnsupportedMediaTypeError(FusionServeError):
    """415: a file the server cannot decode (sniffed from its bytes), or a wrong Content-Type."""


class InvalidInputError(FusionServeError):
    """422: an input the model cannot take; `field` names it (e.g. "text", "inputs[2].image")."""


class OverloadedError(FusionServeError):
    """429: the server refused the request at the door; try again after `retry_after` seconds."""


class ServerError(FusionServeError):
    """5xx."""


class NotReadyError(ServerError):
    """503: the model is still loading, or the server is draining."""


class DeadlineExceededError(ServerError):
    """504: the request's deadline passed while it waited in the server's queue."""


BY_STATUS: dict[int, type[FusionServeError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError,
    422: InvalidInputError,
    429: OverloadedError,
    503: NotReadyError,
    504: DeadlineExceededError,
}


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as delay-seconds or an HTTP-date (RFC 9110 §10.2.3) → seconds from now (≥ 0)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to isdigit(), not to float()
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unparseable: as if absent
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_response(response: httpx.Response) -> FusionServeError:
    """The typed exception for a non-2xx response; a body that is not ours (a proxy's HTML page) still maps."""
    status = response.status_code
    try:
        error = response.json()["error"]
        # v1 names the field `field`; the OpenAI-shaped endpoints (/v1/rerank, /v1/score) name it `param`
        type_, message, field = str(error["type"]), str(error["message"]), error.get("field", error.get("param"))
    except (ValueError, KeyError, TypeError):
        type_, message, field = f"http_{status}", (response.text.strip() or response.reason_phrase)[:500], None
    family = BY_STATUS.get(status) or (ServerError if status >= 500 else FusionServeError)
    return family(status, type_, message, field, retry_after_seconds(response.headers.get("retry-after")))
