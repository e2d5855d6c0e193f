"""Who may change what is served: the repository API's load and unload (docs/model-management.md,
docs/security.md).

Triton refuses them unless started with `--model-control-mode=explicit`; TorchServe keeps its management API
behind its own token. Here FUSIONSERVE_MODEL_CONTROL=none (the default) refuses them with 403, and `explicit`
allows them with the admin key (FUSIONSERVE_ADMIN_KEY, `Authorization: Bearer` or `X-Admin-Key`), never with the
inference key. settings.py refuses to start `explicit` without an admin key unless the host is loopback and no
API key is set. That keyless mode is for a developer's own machine, and "reaches the loopback port" is not
"is the developer": a web page in their browser can POST to 127.0.0.1 (no preflight for an empty body), a
DNS-rebinding name reaches it under a foreign Host, a proxy on the machine forwards others. So without an admin
key a request is refused unless its peer is loopback (uvicorn puts a loopback proxy's X-Forwarded-For client
there), its Host is a loopback name and it carries no foreign Origin or cross-site Sec-Fetch-Site.
Every attempt is logged with who asked, what, and the outcome. Pure ASGI and outermost, so a refusal costs no
routing.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import Forbidden, FusionError, Unauthorized
from service.frontend.api.middleware import CONTROL_PATH, ErrorShapes, presented_key, route_path, send_error
from service.settings import Settings

audit = logging.getLogger("fusionserve.audit")
OFF = (
    "model control is off (FUSIONSERVE_MODEL_CONTROL=none): set FUSIONSERVE_MODEL_CONTROL=explicit and "
    "FUSIONSERVE_ADMIN_KEY to load or unload models through the API; new versions in the model directory are "
    "still picked up with FUSIONSERVE_MODEL_POLL_S"
)
KEYLESS = "without FUSIONSERVE_ADMIN_KEY, models are loaded and unloaded only by a program on this machine"
# what a browser says about where a request comes from: anything but the page's own origin or a typed URL
CROSS_SITE = {"cross-site", "same-site"}  # same-site ignores ports: another localhost server's page is one


def loopback_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback  # ::ffff:127.0.0.1 is loopback too


def loopback_name(host: str | None) -> bool:
    return host is not None and (host.lower() == "localhost" or loopback_address(host))


def _authority(value: str) -> tuple[str | None, int | None]:
    """(host, port) of a URL or a bare `host[:port]`; (None, None) when it does not parse."""
    parts = urlsplit(value if "//" in value else "//" + value)
    try:
        return parts.hostname, parts.port
    except ValueError:  # a port that is not a number
        return None, None


def own_origin(origin: str, server_port: int | None) -> bool:
    """Whether `origin` is this server's own page: http(s) on a loopback name and this server's port."""
    scheme = origin.split("://", 1)[0].lower()
    host, port = _authority(origin)
    port = port or {"http": 80, "https": 443}.get(scheme)
    return scheme in ("http", "https") and loopback_name(host) and port == server_port


def keyless_refusal(scope: Scope) -> FusionError | None:
    """Why a request without an admin key is refused on loopback, or None when it comes from this machine."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
    peer = (scope.get("client") or ("an unknown peer",))[0]
    if not loopback_address(peer):
        return Forbidden(f"{KEYLESS}; {peer} is not a loopback address (behind a proxy: the client it forwards)")
    host = headers.get("host")
    if host is not None and not loopback_name(_authority(host)[0]):
        message = f"{KEYLESS}; Host {host!r} is not a loopback name (a DNS-rebinding page or a forwarding proxy)"
        return Forbidden(message, field="host")
    origin = headers.get("origin")
    if origin is not None and not own_origin(origin, (scope.get("server") or (None, None))[1]):
        return Forbidden(f"{KEYLESS}; a web page from {origin!r} may not load or unload models", field="origin")
    site = headers.get("sec-fetch-site", "").lower()
    if site in CROSS_SITE:
        message = f"{KEYLESS}; the browser says this request comes from another site (Sec-Fetch-Site: {site})"
        return Forbidden(message, field="sec-fetch-site")
    return None


class ModelControlMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, error_shapes: ErrorShapes | None = None):
        self.app, self.shapes, self.mode = app, error_shapes or {}, settings.model_control
        self.key = settings.admin_key.get_secret_value().encode() if settings.admin_key is not None else None

    def _refusal(self, scope: Scope) -> FusionError | None:
        if self.mode != "explicit":
            return Forbidden(OFF)  # no request field is wrong: the server is configured to refuse
        if self.key is None:
            return keyless_refusal(scope)
        if not secrets.compare_digest(presented_key(scope, b"x-admin-key"), self.key):
            message = "missing or wrong admin key (FUSIONSERVE_ADMIN_KEY); the API key does not load or unload models"
            return Unauthorized(message, field="authorization", headers={"WWW-Authenticate": "Bearer"})
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = CONTROL_PATH.match(route_path(scope)) if scope["type"] == "http" else None
        if match is None:
            return await self.app(scope, receive, send)
        who = "{}:{}".format(*(scope.get("client") or ("?", "?")))
        what = f"{match['action']} of model {match['model']!r}"
        refusal = self._refusal(scope)
        if refusal is not None:
            fields = audit_fields(match, who, f"refused ({refusal.status})", refusal.status)
            audit.warning("model control: %s by %s refused (%d): %s", what, who, refusal.status, refusal.message,
                          extra=fields)  # fmt: skip
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
            fields = audit_fields(match, who, "done" if status == 200 else "failed", status or None)
            audit.info("model control: %s by %s with %s: %s", what, who, credential, outcome, extra=fields)


def audit_fields(match, who: str, outcome: str, status: int | None) -> dict:
    """The audit line's fields for FUSIONSERVE_LOG_FORMAT=json (service/logs.py adds the request id)."""
    return {"action": match["action"], "model": match["model"], "who": who, "outcome": outcome, "status": status}
