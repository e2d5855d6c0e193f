"""The pages a person uses, served from local assets only: Swagger UI at /docs, ReDoc at /redoc and the
playground at /. FastAPI's own /docs loads Swagger UI from a CDN and so is blank without internet (every
air-gapped cluster); here the JavaScript, CSS and favicon come from the `fastapi-offline` package (a PyPI
copy of swagger-ui-dist and redoc's standalone bundle) and the playground from service/static/.

The pages and their assets load without an API key (service/frontend/api/middleware.py PAGE_PATHS): they ask for
the key themselves and send it on each API call.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from service.frontend.api.middleware import OPEN_PATHS

OWN_ASSETS = Path(__file__).resolve().parents[2] / "static"  # the playground: html, js, css
VENDOR_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"  # swagger-ui, redoc, favicon
ASSET_PREFIX = "/static"
FAVICON = "favicon.png"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
API_KEY_SCHEME = "apiKey"
SWAGGER_PARAMETERS = {
    "validatorUrl": None,  # the default validator badge is an image fetched from swagger.io
    "displayRequestDuration": True,
}
# The playground runs only its own script: an injected one could read the API key from the page.
PLAYGROUND_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

# ReDoc always renders Redocly's logo from cdn.redoc.ly (no option turns it off; offline it fails and ReDoc
# hides it): the browser is told not to even try, so an air-gapped cluster logs no attempt to leave it.
REDOC_POLICY = "img-src 'self' data: blob:"

router = APIRouter(include_in_schema=False)
# One mount, two folders: the playground's files, then the packaged Swagger UI / ReDoc copies.
router.mount(
    ASSET_PREFIX,
    StaticFiles(directory=OWN_ASSETS, packages=[("fastapi_offline", "static")]),
    name="static",
)


def declare_api_key(app: FastAPI) -> None:
    """With FUSIONSERVE_API_KEY set, the OpenAPI document says which operations need it (all but the probes),
    as an HTTP bearer scheme: Swagger UI then shows "Authorize", keeps the key in the page's memory and sends
    it as `Authorization: Bearer`; generated clients learn it too."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()  # FastAPI's, cached on the app: the scheme is added once
            schema.setdefault("components", {}).setdefault("securitySchemes", {})[API_KEY_SCHEME] = {
                "type": "http",
                "scheme": "bearer",
                "description": "FUSIONSERVE_API_KEY (`X-API-Key: <key>` is accepted too)",
            }
            keyed = (ops for path, ops in schema["paths"].items() if path not in OPEN_PATHS)  # probes stay open
            for operation in (op for ops in keyed for op in ops.values()):
                operation["security"] = [{API_KEY_SCHEME: []}]
        return app.openapi_schema

    app.openapi = openapi


def _root(request: Request) -> str:
    """The prefix a reverse proxy serves us under (uvicorn --root-path), so asset URLs stay right."""
    return request.scope.get("root_path", "").rstrip("/")


def _asset(request: Request, name: str) -> str:
    return f"{_root(request)}{ASSET_PREFIX}/{name}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    app = request.app
    return get_swagger_ui_html(
        openapi_url=_root(request) + app.openapi_url,
        title=f"{app.title} - Swagger UI",
        swagger_js_url=_asset(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset(request, "swagger-ui.css"),
        swagger_favicon_url=_asset(request, FAVICON),
        oauth2_redirect_url=_root(request) + OAUTH2_REDIRECT,
        swagger_ui_parameters=SWAGGER_PARAMETERS | (app.swagger_ui_parameters or {}),
    )


@router.get(OAUTH2_REDIRECT)
async def swagger_ui_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    app = request.app
    page = get_redoc_html(
        openapi_url=_root(request) + app.openapi_url,
        title=f"{app.title} - ReDoc",
        redoc_js_url=_asset(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset(request, FAVICON),
        with_google_fonts=False,  # fonts.googleapis.com: unreachable offline; ReDoc falls back to system fonts
    )
    page.headers["Content-Security-Policy"] = REDOC_POLICY
    return page


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    # browsers ask for /favicon.ico on any page (a JSON answer viewed in a tab too); a PNG body is fine
    return FileResponse(VENDOR_ASSETS / FAVICON, media_type="image/png")


@router.get("/")
async def playground() -> FileResponse:
    return FileResponse(
        OWN_ASSETS / "playground.html",
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": PLAYGROUND_POLICY, "Cache-Control": "no-cache"},
    )
