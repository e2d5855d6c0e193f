"""The pages a person uses, without a browser (tests/browser drives them in Chromium): /docs, /redoc and the
playground load from local assets and without the API key, under a proxy prefix too; with a key the OpenAPI
document declares it; and the form Swagger UI sends (an unfilled file input as an empty field) is accepted."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.routing import Mount

from service.frontend.api import pages
from service.frontend.api.middleware import PAGE_ASSET_PREFIX, PAGE_PATHS
from tests.bundles import sample_inputs
from tests.integration.conftest import fast_settings, serving

KEY = "page-key"
ASSETS = {
    "/static/swagger-ui-bundle.js": "text/javascript",
    "/static/swagger-ui.css": "text/css",
    "/static/redoc.standalone.js": "text/javascript",
    "/static/favicon.png": "image/png",
    "/static/playground.js": "text/javascript",
    "/static/playground.css": "text/css",
    "/favicon.ico": "image/png",
}
REFERENCES = re.compile(r"""(?:src|href)="([^"]+)"|url: '([^']+)'""")  # what a page makes the browser fetch


def references(html: str) -> list[str]:
    return [a or b for a, b in REFERENCES.findall(html)]


@pytest.fixture
async def keyed(tiny_models):
    async with serving(fast_settings(tiny_models, api_key=KEY)) as (_, client):
        yield client


def test_every_page_route_is_open_in_the_api_key_middleware():
    paths = [route.path for route in pages.router.routes if not isinstance(route, Mount)]
    assert set(paths) <= set(PAGE_PATHS)
    (mount,) = [route for route in pages.router.routes if isinstance(route, Mount)]
    assert mount.path + "/" == PAGE_ASSET_PREFIX


async def test_pages_and_assets_load_without_the_key_and_the_api_still_needs_it(keyed):
    for path in ("/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"):
        assert (await keyed.get(path)).status_code == 200, path
    for path, media_type in ASSETS.items():
        response = await keyed.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(media_type), path
    assert (await keyed.get("/v1/models")).status_code == 401
    missing = await keyed.get("/static/missing.js")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found"


async def test_docs_pages_fetch_only_local_assets(client):
    docs, redoc = (await client.get("/docs")).text, (await client.get("/redoc")).text
    assert references(docs) == ["/static/swagger-ui.css", "/static/favicon.png", "/static/swagger-ui-bundle.js",
                                "/openapi.json"]  # fmt: skip
    assert set(references(redoc)) == {"/static/favicon.png", "/static/redoc.standalone.js"}
    assert '"validatorUrl": null' in docs  # no badge image from swagger.io
    assert "fonts.googleapis.com" not in redoc
    assert (await client.get("/redoc")).headers["content-security-policy"] == pages.REDOC_POLICY


async def test_docs_follow_a_proxy_prefix(app_client):
    app, _ = app_client
    transport = httpx.ASGITransport(app=app, root_path="/fusion")
    async with httpx.AsyncClient(transport=transport, base_url="http://fusionserve") as prefixed:
        docs = (await prefixed.get("/docs")).text
    assert "/fusion/static/swagger-ui-bundle.js" in references(docs) and "/fusion/openapi.json" in references(docs)
    assert "window.location.origin + '/fusion/docs/oauth2-redirect'" in docs


async def test_the_playground_runs_only_its_own_files(client):
    page = await client.get("/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "connect-src 'self'" in policy
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), "an inline script: the CSP would block it"
    for reference in references(page.text):
        if reference.startswith("static/"):  # relative: the page works under a proxy prefix
            assert (await client.get("/" + reference)).status_code == 200, reference


async def test_openapi_declares_the_api_key_only_when_one_is_set(keyed, client):
    spec = (await keyed.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "description": "FUSIONSERVE_API_KEY (`X-API-Key: <key>` is accepted too)",
    }  # fmt: skip
    assert spec["paths"]["/v1/models/{model}/classify"]["post"]["security"] == [{"apiKey": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]  # the probes stay open
    assert "apiKey" not in (await client.get("/openapi.json")).json().get("components", {}).get("securitySchemes", {})


async def test_an_unfilled_file_input_counts_as_absent(client):
    image = sample_inputs(seed=4)["image"]
    classify = "/v1/models/tiny/classify"
    swagger = {"image": ("digit.png", image, "image/png"), "audio": (None, ""), "text": (None, "one")}
    response = await client.post(classify, files=swagger)  # Swagger UI sends `audio=` for an unchosen file
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["modalities"] == ["image", "text"]
    html_form = {"image": ("", b"", "application/octet-stream"), "text": (None, "one")}  # a browser's empty input
    assert (await client.post(classify, files=html_form)).json()["results"][0]["modalities"] == ["text"]

    named_but_empty = await client.post(classify, files={"audio": ("clip.wav", b"", "audio/wav")})
    assert named_but_empty.status_code in (415, 422) and named_but_empty.json()["error"]["field"] == "audio"
    empty_text = await client.post(classify, files={"audio": (None, ""), "text": (None, "")})
    assert empty_text.status_code == 422 and empty_text.json()["error"]["message"] == "text is empty"
    nothing = await client.post(classify, files={"image": (None, ""), "audio": (None, "")})
    assert nothing.status_code == 422 and nothing.json()["error"]["message"].startswith("no input")
