"""fusionserve_client: each error answer as its typed exception (status, type, message, field, Retry-After),
the opt-in retry of 429s honouring Retry-After, and transport failures; against httpx.MockTransport."""

from __future__ import annotations

import asyncio
import email.utils
import threading
import time

import httpx
import pytest

import fusionserve_client.client as client_module
from fusionserve_client import (
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ConnectionFailed,
    DeadlineExceededError,
    FusionServeError,
    InvalidInputError,
    NotFoundError,
    NotReadyError,
    OverloadedError,
    PayloadTooLargeError,
    ServerError,
    UnsupportedMediaTypeError,
)
from fusionserve_client.errors import retry_after_seconds

OK = {"model": "tiny", "version": "1", "results": [{"modalities": ["text"], "labels": [{"label": "a", "score": 1.0}]}]}


def error(status: int, type_: str = "queue_full", message: str = "busy", field=None, **headers) -> httpx.Response:
    body = {"error": {"type": type_, "message": message, "field": field}}
    return httpx.Response(status, json=body, headers={k.replace("_", "-"): v for k, v in headers.items()})


class Script:
    """A MockTransport handler answering with the given responses in turn; counts the requests."""

    def __init__(self, *responses: httpx.Response):
        self.responses, self.calls = list(responses), 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return self.responses.pop(0)


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The client's waits between retries, recorded instead of slept. The patches are process-wide, so only
    the test's own thread is recorded: a server another test left running in its thread (the browser
    tests' session server) ticks on asyncio.sleep too, and sleeps for real."""
    waited: list[float] = []
    test_thread, real_sleep, real_async_sleep = threading.get_ident(), time.sleep, asyncio.sleep

    def fake_sleep(seconds: float) -> None:
        if threading.get_ident() != test_thread:
            return real_sleep(seconds)
        waited.append(seconds)

    async def fake_async_sleep(seconds: float, *args) -> None:
        if threading.get_ident() != test_thread:
            return await real_async_sleep(seconds, *args)
        waited.append(seconds)

    monkeypatch.setattr(client_module.time, "sleep", fake_sleep)
    monkeypatch.setattr(client_module.asyncio, "sleep", fake_async_sleep)
    return waited


def client_for(script: Script, **options) -> Client:
    return Client("http://fusionserve", transport=httpx.MockTransport(script), **options)


@pytest.mark.parametrize(
    ("status", "type_", "field", "expected"),
    [
        (400, "bad_request", "form", BadRequestError),
        (401, "unauthorized", "authorization", AuthenticationError),
        (404, "not_found", "model", NotFoundError),
        (413, "payload_too_large", "inputs", PayloadTooLargeError),
        (415, "unsupported_media_type", "image", UnsupportedMediaTypeError),
        (422, "invalid_input", "inputs[2].text", InvalidInputError),
        (429, "queue_full", None, OverloadedError),
        (503, "not_ready", None, NotReadyError),
        (504, "deadline_exceeded", None, DeadlineExceededError),
        (500, "internal_error", None, ServerError),
        (418, "teapot", None, FusionServeError),
    ],
)
def test_each_status_raises_its_exception_with_the_server_body(status, type_, field, expected):
    script = Script(error(status, type_, f"the {type_} message", field))
    with client_for(script) as client, pytest.raises(expected) as raised:
        client.classify("tiny", text="t")
    failure = raised.value
    assert type(failure) is expected and isinstance(failure, FusionServeError)
    assert (failure.status, failure.type, failure.message, failure.field) == (
        status,
        type_,
        f"the {type_} message",
        field,
    )
    assert str(failure).startswith(f"{status} {type_}") and f"the {type_} message" in str(failure)


def test_a_body_that_is_not_ours_still_maps_by_status():
    script = Script(httpx.Response(502, text="<html>Bad Gateway</html>"))
    with client_for(script) as client, pytest.raises(ServerError) as raised:
        client.embed("tiny", text="t")
    assert (raised.value.status, raised.value.type, raised.value.message) == (
        502,
        "http_502",
        "<html>Bad Gateway</html>",
    )


def test_retry_after_is_read_as_seconds_or_an_http_date():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(email.utils.formatdate(1_000_030, usegmt=True), now=1_000_000) == pytest.approx(30)
    assert retry_after_seconds(email.utils.formatdate(1_000_000, usegmt=True), now=1_000_030) == 0.0  # in the past
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None


def test_a_429_is_raised_at_once_by_default_with_its_retry_after(sleeps):
    script = Script(error(429, retry_after="3"), httpx.Response(200, json=OK))
    with client_for(script) as client, pytest.raises(OverloadedError) as raised:
        client.classify("tiny", text="t")
    assert raised.value.retry_after == 3.0 and script.calls == 1 and sleeps == []


def test_retries_wait_what_retry_after_says_then_succeed(sleeps):
    script = Script(error(429, retry_after="2"), error(429, retry_after="1"), httpx.Response(200, json=OK))
    with client_for(script, retries=2) as client:
        assert client.classify("tiny", text="t").top.label == "a"
    assert sleeps == [2.0, 1.0] and script.calls == 3


def test_retries_run_out_and_the_last_429_is_raised(sleeps):
    script = Script(*(error(429, retry_after="1") for _ in range(3)))
    with client_for(script, retries=2) as client, pytest.raises(OverloadedError):
        client.classify("tiny", text="t")
    assert sleeps == [1.0, 1.0] and script.calls == 3


def test_without_retry_after_the_client_backs_off_exponentially(sleeps):
    script = Script(error(429), error(429), httpx.Response(200, json=OK))
    with client_for(script, retries=5) as client:
        client.classify("tiny", text="t")
    assert sleeps == [0.5, 1.0]


def test_a_pause_longer_than_the_cap_is_not_waited_for(sleeps):
    script = Script(error(429, retry_after=str(int(client_module.MAX_RETRY_WAIT_S) + 1)))
    with client_for(script, retries=3) as client, pytest.raises(OverloadedError):
        client.classify("tiny", text="t")
    assert sleeps == [] and script.calls == 1


def test_other_errors_are_never_retried(sleeps):
    script = Script(error(503, "not_ready", retry_after="1"))
    with client_for(script, retries=3) as client, pytest.raises(NotReadyError):
        client.classify("tiny", text="t")
    assert script.calls == 1


async def test_the_async_client_retries_and_maps_errors_the_same_way(sleeps):
    script = Script(error(429, retry_after="4"), error(422, "invalid_input", "text is empty", "text"))
    async with AsyncClient("http://fusionserve", transport=httpx.MockTransport(script), retries=1) as client:
        with pytest.raises(InvalidInputError) as raised:
            await client.classify("tiny", text="")
    assert sleeps == [4.0] and raised.value.field == "text"


def test_transport_failures_are_connection_failed_without_a_status():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    transport = httpx.MockTransport(refuse)
    with Client("http://fusionserve", transport=transport) as client, pytest.raises(ConnectionFailed) as raised:
        client.models()
    assert raised.value.status is None and raised.value.type == "connection_failed"
    assert "http://fusionserve" in raised.value.message and "connection refused" in raised.value.message


def test_ready_is_true_on_200_false_on_503_and_raises_on_anything_else():
    script = Script(
        httpx.Response(200, json={"ready": True}),
        httpx.Response(503, json={"ready": False}),
        httpx.Response(404, text="no such page"),  # e.g. a proxy in front that does not route /readyz
    )
    with client_for(script) as client:
        assert client.ready() is True
        assert client.ready() is False
        with pytest.raises(FusionServeError) as raised:
            client.ready()
    assert raised.value.status == 404


def test_retries_must_not_be_negative():
    with pytest.raises(ValueError, match="retries must be ≥ 0"):
        Client(retries=-1)
