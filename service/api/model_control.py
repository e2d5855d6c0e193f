"""Who may change what is served: the repository API's load and unload (docs/model-management.md).

Triton refuses them unless started with `--model-control-mode=explicit`; TorchServe keeps its management API
behind its own token. Here FUSIONSERVE_MODEL_CONTROL=none (the default) refuses them with 403, and `explicit`
allows them with the admin key (FUSIONSERVE_ADMIN_KEY, `Authorization: Bearer` or `X-Admin-Key`), never with the
inference key; settings.py refuses to start `explicit` without an admin key unless the host is loopback. Every
attempt is logged with who asked, what, and the outcome. Pure ASGI and outermost, so a refusal costs no routing.
"""

from __future__ import annotations

import logging
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.middleware import CONTROL_PATH, ErrorShapes, presented_key, send_error
from service.errors import Forbidden, FusionError, Unauthorized
from service.settings import Settings

audit = logging.getLogger("fusionserve.audit")
OFF = (
    "model control is off (FUSIONSERVE_MODEL_CONTROL=none): set FUSIONSERVE_MODEL_CONTROL=explicit and "
    "FUSIONSERVE_ADMIN_KEY to load or unload models through the API; new versions in the model directory are "
    "still picked up with FUSIONSERVE_MODEL_POLL_S"
)


class ModelControlMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, error_shapes: ErrorShapes | None = None):
        self.app, self.shapes, self.mode = app, error_shapes or {}, settings.model_control
        self.key = settings.admin_key.get_secret_value().encode() if settings.admin_key is not None else None

    def _refusal(self, scope: Scope) -> FusionError | None:
        if self.mode != "explicit":
            return Forbidden(OFF)  # no request field is wrong: the server is configured to refuse
        if self.key is not None and not secrets.compare_digest(presented_key(scope, b"x-admin-key"), self.key):
            message = "missing or wrong admin key (FUSIONSERVE_ADMIN_KEY); the API key does not load or unload models"
            return Unauthorized(message, field="authorization", headers={"WWW-Authenticate": "Bearer"})
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = CONTROL_PATH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            return await self.app(scope, receive, send)
        who = "{}:{}".format(*(scope.get("client") or ("?", "?")))
        what = f"{match['action']} of model {match['model']!r}"
        refusal = self._refusal(scope)
        if refusal is not None:
            audit.warning("model control: %s by %s refused (%d): %s", what, who, refusal.status, refusal.message)
            return await send_error(scope, receive, send, refusal, self.shapes)
        credential = "the admin key" if self.key is not None else "no key (loopback only, no admin key set)"
        status = 0

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            outcome = "done" if status == 200 else f"failed ({status or 'no answer'})"
            audit.info("model control: %s by %s with %s: %s", what, who, credential, outcome)
