"""Answers given outside a route — the door's 429 (api/door.py), the body's 413 / 408 / 503 (api/body.py), the
drain's 503 (service/frontend/drain.py) — counted as the route's cycle counts its own answers and shaped as the
path's protocol answers: one `refuse` for all of them.

- Counted by the data plane's own tracking (DataPlane.track), once, under the Call the route would have made
  (`inference_call`): fusionserve_requests_total by the path's endpoint label and status, rejected_total by
  reason, the request duration. OpenAI names its model in the body, which an answer before the route has not
  read: it counts under model "unknown", and so, like every unknown model, not in rejected_total.
- Shaped by ERROR_SHAPES, the error body of the protocol that owns the path (middleware.send_error); the app's
  exception handlers use the same map (api/errors.py).
"""

from __future__ import annotations

import contextlib
import re
from urllib.parse import parse_qs

from starlette.types import Receive, Scope, Send

from service.errors import FusionError
from service.frontend.api import openai_embeddings, rerank, score
from service.frontend.api.middleware import ErrorShapes, route_path, send_error
from service.frontend.api.openai_embeddings import openai_error
from service.frontend.api.v2 import rest
from service.frontend.cycle import Call
from service.frontend.dataplane import DataPlane

# path prefix → the protocol's error response; v1's shape is the default (middleware.shape_for)
# (/v2/rerank is Cohere's ClientV2 path, not KServe V2's: the longer prefix wins)
OPENAI_PATHS = {openai_embeddings.PATH: openai_embeddings.ENDPOINT, score.PATH: score.ENDPOINT} | dict.fromkeys(
    rerank.PATHS, rerank.ENDPOINT
)
ERROR_SHAPES: ErrorShapes = {"/v2/": rest.v2_error} | dict.fromkeys(OPENAI_PATHS, openai_error)
V1_INFER = re.compile(r"^/v1/models/([^/]+)/(classify|embed|zero-shot)$")
V1_ENDPOINTS = {"classify": "classify", "embed": "embed", "zero-shot": "zero_shot"}  # path verb → endpoint label
V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
TRUE = {"1", "true", "t", "yes", "y", "on"}  # what FastAPI reads as a true bool query parameter
DRAINING = "the server is shutting down; retry the request on another instance"


class Draining(FusionError):
    """A new request while the server drains (SIGTERM): 503, and the client goes elsewhere."""

    status, type = 503, "draining"
    reject_reason = "draining"  # fusionserve_rejected_total{reason}

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        super().__init__(DRAINING, headers=headers)


CALL_KEY = "fusionserve.inference_call"  # the scope remembers its Call: the drain, door and body layers all ask


def inference_call(scope: Scope) -> Call | None:
    """The Call the route of an inference POST makes (model "" for OpenAI's: it is in the body); None otherwise.
    Worked out once per request and kept in the scope."""
    if CALL_KEY not in scope:
        scope[CALL_KEY] = _inference_call(scope)
    return scope[CALL_KEY]


def _inference_call(scope: Scope) -> Call | None:
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path = route_path(scope)
    if match := V1_INFER.match(path):
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        version = query.get("version", [None])[0]
        explain = match.group(2) == "classify" and query.get("explain", [""])[0].lower() in TRUE
        return Call(match.group(1), version, V1_ENDPOINTS[match.group(2)], explain)
    if match := V2_INFER.match(path):
        return Call(match.group(1), match.group(2), rest.ENDPOINT)
    if path in OPENAI_PATHS:  # the model is in the body
        return Call("", None, OPENAI_PATHS[path])
    return None


async def count(plane: DataPlane, call: Call, error: FusionError) -> None:
    """`error` counted once, exactly as the route's cycle would count it."""
    with contextlib.suppress(type(error)):
        async with plane.track(call.model, call.endpoint):
            raise error


async def refuse(plane: DataPlane | None, scope: Scope, receive: Receive, send: Send, error: FusionError,
                 shapes: ErrorShapes = ERROR_SHAPES) -> None:  # fmt: skip
    """Answer `error` in the path's protocol shape, counted (with a plane) when the path is an inference's."""
    call = inference_call(scope)
    if plane is not None and call is not None:
        await count(plane, call, error)
    await send_error(scope, receive, send, error, shapes)
