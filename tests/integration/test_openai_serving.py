"""/v1/embeddings under the server's rules, with the real `openai` SDK: image URLs fetched only from allow-listed
hosts (a real HTTP server on 127.0.0.1), the API key, door admission (429) and a fetch past the deadline (504).
What every protocol does alike (deadlines and callers gone while queued): test_protocols.py."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import openai
import pytest

from tests import media
from tests.integration.conftest import fast_settings, metric, serving
from tests.integration.live import ThreadedServer
from tests.integration.protocols import b64
from tests.integration.protocols import openai_refused as refused
from tests.integration.test_dataplane import _at_capacity

KEY = "sekret"
LIMIT = 64 * 1024  # FUSIONSERVE_MAX_UPLOAD_BYTES of the fetching server
SMALL, BIG = media.png(20, 20, seed=1), media.png(300, 300, seed=2)  # BIG: random pixels, far over LIMIT
MEDIUM = media.png(120, 120, seed=3)  # ~43 KB: one is under LIMIT, two are over it


class MediaHost(BaseHTTPRequestHandler):
    """The allow-listed host: a PNG, a PNG over the limit, a 404, a redirect and a slow answer."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path == "/slow.png":
            time.sleep(1.0)
        if self.path == "/moved.png":
            self.send_response(302)
            self.send_header("Location", "/small.png")
            self.end_headers()
            return
        body = {"/small.png": SMALL, "/slow.png": SMALL, "/big.png": BIG, "/medium.png": MEDIUM}.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def media_host():
    server = ThreadingHTTPServer(("127.0.0.1", 0), MediaHost)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(10)


@pytest.fixture(scope="module")
def secured(tiny_models, media_host):
    # the media host's address, scheme and port named outright: plain http, a loopback address, a high port
    settings = fast_settings(tiny_models, api_key=KEY, url_allow_hosts=[media_host], max_upload_bytes=LIMIT)
    with ThreadedServer(settings) as server:
        yield server


def sdk_for(server, api_key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=api_key, max_retries=0)


def image_item(url: str) -> list[dict]:
    return [{"type": "text", "text": "one"}, {"type": "image_url", "image_url": {"url": url}}]


def test_the_api_key_is_required_and_enough(secured):
    with sdk_for(secured, "not-the-key") as sdk, pytest.raises(openai.AuthenticationError) as caught:
        sdk.embeddings.create(model="tiny", input="one")
    assert caught.value.message == "Error code: 401 - missing or wrong API key"
    # no key at all: the SDK refuses to send one, so plain httpx
    missing = httpx.post(secured.base_url + "/v1/embeddings", json={"model": "tiny", "input": "one"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    with sdk_for(secured) as sdk:
        assert len(sdk.embeddings.create(model="tiny", input="one").data[0].embedding) == 8


def test_allow_listed_urls_are_fetched_and_equal_the_inline_image(secured, media_host):
    with sdk_for(secured) as sdk:
        fetched = sdk.embeddings.create(model="tiny", input=[image_item(media_host + "/small.png")])
        inline = sdk.embeddings.create(model="tiny", input=[image_item("data:image/png;base64," + b64(SMALL))])
    assert np.allclose(fetched.data[0].embedding, inline.data[0].embedding, atol=1e-6)
    v1 = httpx.post(secured.base_url + "/v1/models/tiny/embed", headers={"x-api-key": KEY},
                    json={"inputs": [{"text": "one", "image": b64(SMALL)}]})  # fmt: skip
    np.testing.assert_allclose(fetched.data[0].embedding, v1.json()["results"][0]["fused"], atol=1e-5)


UNFETCHED = "the file could not be fetched (the host did not answer 200 with it within 10 s)"
FETCH_ERRORS = {  # path → (SDK error, what the message says): one message for every upstream failure
    "/missing.png": (openai.UnprocessableEntityError, UNFETCHED),
    "/moved.png": (openai.UnprocessableEntityError, UNFETCHED),
    "/big.png": (openai.APIStatusError, f"exceed {LIMIT} bytes in all (FUSIONSERVE_MAX_UPLOAD_BYTES)"),
}


@pytest.mark.parametrize("path", FETCH_ERRORS)
def test_fetch_failures_name_the_part(secured, media_host, path):
    error_class, message = FETCH_ERRORS[path]
    with sdk_for(secured) as sdk:
        body = refused(error_class, lambda: sdk.embeddings.create(model="tiny", input=[image_item(media_host + path)]))
    assert body["param"] == "input[0][1].image_url" and message in body["message"], body


def test_the_byte_limit_holds_for_all_fetched_files_together(secured, media_host):
    with sdk_for(secured) as sdk:
        one = sdk.embeddings.create(model="tiny", input=[image_item(media_host + "/medium.png")])
        assert len(one.data) == 1
        two = [image_item(media_host + "/medium.png")] * 2
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.embeddings.create(model="tiny", input=two)
    assert caught.value.status_code == 413 and f"exceed {LIMIT} bytes in all" in caught.value.message


def test_a_fetch_past_the_deadline_is_504(secured, media_host):
    with sdk_for(secured) as sdk:
        call = lambda: sdk.embeddings.create(  # noqa: E731
            model="tiny", input=[image_item(media_host + "/slow.png")], extra_headers={"x-request-timeout-ms": "300"}
        )
        body = refused(openai.InternalServerError, call)
    assert (body["code"], body["type"], body["param"]) == ("deadline_exceeded", "server_error", "input[0][1].image_url")


def test_other_hosts_stay_refused_with_an_allow_list(secured, media_host):
    with sdk_for(secured) as sdk:
        embed = lambda url: sdk.embeddings.create(model="tiny", input=[image_item(url)])  # noqa: E731
        body = refused(openai.UnprocessableEntityError, lambda: embed("http://localhost:1/x.png"))
        assert f"'localhost' is not allowed (allowed: {media_host})" in body["message"]
        body = refused(openai.UnprocessableEntityError, lambda: embed("file:///etc/passwd"))
        assert body["message"].startswith("input[0][1].image_url: send a data: URL")


async def test_at_capacity_is_a_rate_limit_error_with_retry_after(tiny_models):
    async with serving(fast_settings(tiny_models, max_queue_wait_ms=100)) as (app, client):
        _at_capacity(app.state.context.plane, in_flight=500, rate=50.0)  # expected wait 10 s, far over 100 ms
        sdk = openai.AsyncOpenAI(base_url="http://fusionserve/v1", api_key="unused", max_retries=0, http_client=client)
        with pytest.raises(openai.RateLimitError) as caught:
            await sdk.embeddings.create(model="tiny", input="one")
    assert caught.value.body["code"] == "rate_limit_exceeded" and int(caught.value.response.headers["retry-after"]) >= 1
    assert "FUSIONSERVE_MAX_QUEUE_WAIT_MS" in caught.value.message
    assert metric(app, "fusionserve_requests_total", model="tiny", endpoint="openai_embeddings", status="429") == 1
