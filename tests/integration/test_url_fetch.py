"""What an image URL can reach (frontend/fetch.py, url_policy.py), against real HTTP servers on loopback:
only the scheme, host and port an allow-list entry names; a name only at a public address or one the allow-list
names; the connection at the address that was checked (a rebinding name cannot switch it); every upstream
failure one message (no port-scan oracle); URLs in the log without their query or user info."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from types import SimpleNamespace

import httpx
import pytest

from service.errors import InvalidInput
from service.frontend.fetch import Fetcher, Remote, allowed_url
from service.settings import Settings
from service.url_policy import public_address
from tests.integration.conftest import fast_settings
from tests.integration.live import ThreadedServer, free_port
from tests.integration.test_openai_serving import SMALL, MediaHost

FIELD = "input[0][1].image_url"


class CountingHost(MediaHost):
    """The tests' media host, noting the paths it was sent."""

    requests: list[str]

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.path = self.path.partition("?")[0]  # a presigned URL's query: the same file
        self.server.requests.append(self.path)
        super().do_GET()


@contextmanager
def media_server(address: str = "127.0.0.1", port: int = 0):
    server = ThreadingHTTPServer((address, port), CountingHost)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def media():
    with media_server() as server:
        yield server


async def fetch(url: str, *allow: str) -> bytes:
    """`url` fetched as the OpenAI image_url part is, with FUSIONSERVE_URL_ALLOW_HOSTS=`allow`."""
    settings = Settings(url_allow_hosts=list(allow))
    item = SimpleNamespace(image=None)
    remote = Remote(allowed_url(url, settings, FIELD), FIELD, item, "image")
    await Fetcher(settings, time.monotonic() + 5).fetch_all([remote])
    return item.image


def resolving(monkeypatch, name: str, *answers: str) -> list[str]:
    """`name` resolves to answers[0], then answers[1], ... (the last one from then on); other names as usual."""
    real, given = socket.getaddrinfo, []

    def getaddrinfo(host, port, *args, **kwargs):
        if (host.decode() if isinstance(host, bytes) else host) != name:  # anyio passes the name as IDNA bytes
            return real(host, port, *args, **kwargs)
        address = answers[min(len(given), len(answers) - 1)]
        given.append(address)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return given


def test_plain_http_and_other_ports_need_an_entry_of_their_own(tiny_models, media):
    port = media.server_address[1]
    with ThreadedServer(fast_settings(tiny_models, url_allow_hosts=["127.0.0.1"])) as server:  # https on 443 only
        for url, origin in ((f"http://127.0.0.1:{port}/small.png", f"http://127.0.0.1:{port}"),
                            (f"https://127.0.0.1:{port}/small.png", f"https://127.0.0.1:{port}")):  # fmt: skip
            image = {"type": "image_url", "image_url": {"url": url}}
            response = httpx.post(server.base_url + "/v1/embeddings", json={"model": "tiny", "input": [[image]]})
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert error["param"] == "input[0][0].image_url", error
            assert (
                f"{origin} is not allowed: FUSIONSERVE_URL_ALLOW_HOSTS allows '127.0.0.1' only as https://127.0.0.1:443"
                in error["message"]
            )
    assert media.requests == []  # nothing was sent


async def test_a_name_at_a_loopback_address_is_refused_unless_the_address_is_named(media):
    url = f"http://localhost:{media.server_address[1]}/small.png"
    with pytest.raises(InvalidInput) as refused:
        await fetch(url, f"http://localhost:{media.server_address[1]}")
    assert refused.value.field == FIELD and "'localhost' resolves to no public address" in refused.value.message
    assert media.requests == []
    assert await fetch(url, f"http://localhost:{media.server_address[1]}", "127.0.0.1") == SMALL  # named: fetched


async def test_a_name_at_the_metadata_address_is_refused_before_any_connection(monkeypatch):
    given = resolving(monkeypatch, "images.example", "169.254.169.254")
    with pytest.raises(InvalidInput) as refused:
        await fetch("https://images.example/latest/meta-data/", "images.example")
    assert "'images.example' resolves to no public address" in refused.value.message
    assert given == ["169.254.169.254"]  # resolved once, to check it; never connected


async def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch, media):
    port = media.server_address[1]
    with media_server("127.0.0.2", port) as inner:  # where the name points once it has been checked
        given = resolving(monkeypatch, "rebind.example", "127.0.0.1", "127.0.0.2")
        assert (
            await fetch(f"http://rebind.example:{port}/small.png", f"http://rebind.example:{port}", "127.0.0.1")
            == SMALL
        )
        assert given == ["127.0.0.1"] and inner.requests == [] and media.requests == ["/small.png"]


async def test_every_upstream_failure_reads_the_same(media):
    port, closed = media.server_address[1], free_port()
    allow = (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{closed}")
    messages = set()
    for url in (f"http://127.0.0.1:{port}/missing.png", f"http://127.0.0.1:{port}/moved.png",
                f"http://127.0.0.1:{closed}/small.png"):  # fmt: skip
        with pytest.raises(InvalidInput) as failed:
            await fetch(url, *allow)
        messages.add(failed.value.message)
    assert media.requests == ["/missing.png", "/moved.png"]  # fetched: the host answered
    assert len(messages) == 1, messages  # a 404, a redirect and a closed port: no telling them apart
    assert "HTTP" not in messages.pop()


async def test_urls_are_logged_without_their_query_or_user_info(media, caplog):
    caplog.set_level(logging.INFO, logger="httpx")
    caplog.set_level(logging.INFO, logger="fusionserve")
    base = f"http://reader:pa55word@127.0.0.1:{media.server_address[1]}"
    signed = "?X-Amz-Signature=5ecret5ignature&X-Amz-Credential=AKIA"
    allow = f"http://127.0.0.1:{media.server_address[1]}"
    assert await fetch(base + "/small.png" + signed, allow) == SMALL
    with pytest.raises(InvalidInput):
        await fetch(base + "/missing.png" + signed, allow)
    lines = [record.getMessage() for record in caplog.records]
    assert any(line.startswith("HTTP Request: GET") and "/small.png?<redacted>" in line for line in lines), lines
    assert any("/missing.png?<redacted> failed: HTTP 404" in line for line in lines), lines
    assert not [line for line in lines if "5ecret" in line or "pa55word" in line or "AKIA" in line]


@pytest.mark.parametrize(
    "address, public",
    [("93.184.215.14", True), ("2606:4700::1111", True), ("169.254.169.254", False), ("100.100.100.200", False),
     ("10.0.0.1", False), ("127.0.0.1", False), ("::1", False), ("fe80::1", False), ("224.0.0.1", False),
     ("0.0.0.0", False), ("::ffff:127.0.0.1", False), ("64:ff9b::a9fe:a9fe", False), ("2002:a9fe:a9fe::1", False)],
)  # fmt: skip
def test_which_addresses_are_public(address, public):
    assert public_address(ipaddress.ip_address(address)) is public
