"""One in-flight byte budget for request bodies across protocols (service/frontend/body_budget.py, api/body.py), and
honest admission accounting: a 413 answered before routing is counted, and only served requests raise the
door's drain rate (docs/bad-input.md rows 29–30, docs/design-choices.md "Slow and large bodies")."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import struct
import time

import grpc
import httpx
import numpy as np

from service.frontend.api.v2 import grpc_predict_v2_pb2 as pb2
from service.frontend.api.v2 import grpc_predict_v2_pb2_grpc as pb2_grpc
from tests.integration.conftest import Gate, fast_settings, metric, serving
from tests.integration.live import free_port
from tests.integration.test_slow_bodies import FrontEndServer
from tests.waiting import wait_until_async

SIZE = 800_000  # bytes of each large body
BUDGET = 3 * SIZE + 100_000  # three large bodies fit, a fourth does not
EMBED = "/v1/models/tiny/embed"
JSON = {"Content-Type": "application/json"}


def padded(document: dict, size: int = SIZE) -> bytes:
    """`document` as JSON of exactly `size` bytes (whitespace before the closing brace: the same request)."""
    text = json.dumps(document)
    return (text[:-1] + " " * (size - len(text)) + "}").encode()


def grpc_text_request(size: int) -> pb2.ModelInferRequest:
    text = b"x" * size
    tensor = pb2.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[1])
    return pb2.ModelInferRequest(
        model_name="tiny", inputs=[tensor], raw_input_contents=[struct.pack("<I", size) + text]
    )


async def refusals_while_full(client: httpx.AsyncClient, grpc_url: str) -> list[tuple[str, str]]:
    """Every protocol's large request while the budget is full: (protocol, the message it was refused with)."""
    messages = []
    for _ in range(2):
        refused = await client.post(EMBED, content=padded({"inputs": [{"text": "one more"}]}), headers=JSON)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1", refused.text
        assert refused.json()["error"]["type"] == "body_budget_full"
        messages.append(("v1", refused.json()["error"]["message"]))

    async def chunks():  # no Content-Length: reserved chunk by chunk, refused at the chunk that does not fit
        body = padded({"inputs": [{"text": "chunked"}]})
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    refused = await client.post(EMBED, content=chunks(), headers=JSON)
    assert refused.status_code == 503 and refused.request.headers["transfer-encoding"] == "chunked", refused.text
    messages.append(("v1 chunked", refused.json()["error"]["message"]))
    refused = await client.post("/v2/models/tiny/infer", content=padded({"inputs": []}), headers=JSON)
    assert refused.status_code == 503, refused.text
    messages.append(("v2", refused.json()["error"]))
    refused = await client.post("/v1/embeddings", content=padded({"model": "tiny", "input": "x"}), headers=JSON)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "body_budget_full", refused.text
    messages.append(("openai", refused.json()["error"]["message"]))
    async with grpc.aio.insecure_channel(grpc_url) as channel:
        call = pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(grpc_text_request(300_000))
        try:
            await call
            raise AssertionError("a gRPC message over the budget was served")
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            assert ("retry-after", "1") in tuple(error.trailing_metadata())
            messages.append(("grpc", error.details()))
    return messages


async def test_large_bodies_of_every_protocol_share_one_budget_reserved_before_they_are_buffered(tiny_models):
    settings = fast_settings(tiny_models, max_upload_bytes=1_000_000, max_inflight_body_bytes=BUDGET,
                             grpc_port=free_port())  # fmt: skip
    with FrontEndServer(settings) as live:
        app, budget = live.app, live.app.state.context.plane.body_budget
        grpc_url = f"127.0.0.1:{settings.grpc_port}"
        async with httpx.AsyncClient(base_url=live.base_url, timeout=60) as client:
            reference = await client.post(EMBED, json={"inputs": [{"text": "held"}]})
            assert reference.status_code == 200, reference.text
            with Gate(app, "text") as gate:  # three large requests held in the model, their bodies reserved
                body = padded({"inputs": [{"text": "held"}]})
                held = [asyncio.ensure_future(client.post(EMBED, content=body, headers=JSON)) for _ in range(3)]
                await wait_until_async(lambda: budget.reserved == 3 * SIZE and gate.entered.is_set(), what="3 held")
                messages = await refusals_while_full(client, grpc_url)
                gate.open()
                answers = await asyncio.gather(*held)
            await wait_until_async(lambda: budget.reserved == 0, what="every reservation released")
    print(f"peak reserved {budget.peak} of {BUDGET} bytes; refused: {[protocol for protocol, _ in messages]}")
    assert 3 * SIZE <= budget.peak <= BUDGET  # the held three, plus the chunks of the chunked body that fitted
    for protocol, message in messages:
        assert "FUSIONSERVE_MAX_INFLIGHT_BODY_BYTES" in message and str(BUDGET) in message, (protocol, message)
    expected = np.asarray(reference.json()["results"][0]["fused"])
    for answer in answers:
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["results"][0]["fused"], expected, atol=1e-5)
    # the model is in the URL for v1 (3), V2 REST and gRPC; OpenAI's is in the body it was refused before
    assert metric(app, "fusionserve_rejected_total", model="tiny", reason="body_budget") == 5


async def test_a_413_answered_before_routing_is_counted_as_rejected_too_large(tiny_models):
    async with serving(fast_settings(tiny_models, max_upload_bytes=1024)) as (app, client):
        for url, endpoint in ((EMBED, "embed"), ("/v2/models/tiny/infer", "v2_infer")):
            response = await client.post(url, content=padded({"inputs": []}, 2000), headers=JSON)
            assert response.status_code == 413 and "FUSIONSERVE_MAX_UPLOAD_BYTES" in response.text
            assert metric(app, "fusionserve_requests_total", model="tiny", endpoint=endpoint, status="413") == 1
        assert metric(app, "fusionserve_rejected_total", model="tiny", reason="too_large") == 2


async def test_only_served_requests_raise_the_door_s_drain_rate(tiny_models):
    """A burst of cheap bad requests (refused after admission, in preprocessing) must not read as capacity."""
    bad = {"inputs": [{"image": base64.b64encode(b"not an image at all").decode()}]}
    good = {"inputs": [{"text": "served"}]}
    async with serving(fast_settings(tiny_models)) as (app, client):
        meter = app.state.context.plane.meter("tiny", "1")
        answers = await asyncio.gather(*(client.post(EMBED, json=bad) for _ in range(40)))
        assert {a.status_code for a in answers} <= {415, 422}, {a.status_code for a in answers}
        assert meter.in_flight == 0
        assert meter.rate(time.monotonic() + 1) is None  # a second later: every burst second is past and judged
        while meter.rate(time.monotonic() + 1) is None:  # served ones do raise it (one burst, on a fast machine)
            answers = await asyncio.gather(*(client.post(EMBED, json=good) for _ in range(40)))
            assert {a.status_code for a in answers} == {200}


class CountingRelay:
    """A TCP relay in front of a server that counts the bytes the client got the server to take."""

    def __init__(self, target_port: int):
        self.target_port, self.to_server, self.writers = target_port, 0, []

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        for writer in self.writers:  # both ends at once, as a client's own close would (a pump may be blocked)
            writer.transport.abort()

    async def _relay(self, client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [client_writer, server_writer]

        async def pump(reader, writer, count: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    if count:
                        self.to_server += len(data)
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pump(client_reader, server_writer, True), pump(server_reader, client_writer, False))


async def test_an_unauthenticated_grpc_call_is_denied_before_its_message_is_read(tiny_models):
    """A caller without the key is denied on its metadata: its 19 MB message is never taken in."""
    # a short drain: grpc keeps the denied call open past the relay's close until the stop's grace ends
    settings = fast_settings(tiny_models, api_key="inference-key", grpc_port=free_port(), drain_timeout_s=2)
    with FrontEndServer(settings):
        relay = CountingRelay(settings.grpc_port)
        async with relay as port, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb2_grpc.GRPCInferenceServiceStub(channel)
            try:
                await stub.ModelInfer(grpc_text_request(19_000_000), timeout=20)
                raise AssertionError("served without a key")
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
    print(f"an unauthenticated 19 MB gRPC call: {relay.to_server} bytes reached the server")
    # HTTP/2 flow control lets a few MB in before the denial arrives (1.5 MB on an idle machine, 4.2 MB on a busy
    # one: grpc grows its window by BDP probing); reading the whole message was 19.0 MB
    assert relay.to_server < 19_000_000 // 2
