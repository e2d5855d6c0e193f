"""Every protocol through the data plane's one cycle: one deadline rule (the same bad timeout is the same 422, naming
the field, judged at the same point: before the door), the drain's refusal in the protocol's shape and counted once,
and Starlette's own 404 / 405 / 500 in the protocol's shape. v1 and KServe V2 REST over httpx, OpenAI with the
`openai` SDK, KServe V2 gRPC with tritonclient's asyncio client, against one app served in this event loop behind
the drain middleware, as `fusionserve serve` serves it (service/frontend/process.py)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import httpx
import openai
import pytest
import tritonclient.grpc.aio as triton_aio
from tritonclient.utils import InferenceServerException

from service.frontend.api.refusals import DRAINING
from service.frontend.api.request_id import RequestIdMiddleware
from service.frontend.api.v2 import grpc_predict_v2_pb2 as pb2
from service.frontend.api.v2 import grpc_predict_v2_pb2_grpc as pb2_grpc
from service.frontend.drain import DrainMiddleware
from tests.integration.conftest import fast_settings, metric, serving
from tests.integration.live import free_port
from tests.integration.request_ids import without_request_id
from tests.integration.test_dataplane import _at_capacity
from tests.integration.test_v2_grpc import tensors

HEADER = "x-request-timeout-ms"
PARAMETER = "parameters.timeout"
V1, V2 = "/v1/models/tiny/embed", "/v2/models/tiny/infer"
V2_BODY = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["one two"]}]}
V1_BODY = {"inputs": [{"text": "one two"}]}
ENDPOINTS = {"v1": "embed", "v2": "v2_infer", "openai": "openai_embeddings", "grpc": "v2_grpc_infer"}


@dataclass
class Served:
    app: object
    front: object  # the app behind the drain middleware
    http: httpx.AsyncClient
    sdk: openai.AsyncOpenAI
    grpc: triton_aio.InferenceServerClient
    grpc_url: str

    def client(self, port: int) -> httpx.AsyncClient:
        """Another HTTP client, from its own client port: the door holds a refused one until its Retry-After."""
        transport = httpx.ASGITransport(app=self.front, client=("127.0.0.1", port))
        return httpx.AsyncClient(transport=transport, base_url="http://fusionserve", timeout=60)


@pytest.fixture
async def served(tiny_models):
    settings = fast_settings(tiny_models, grpc_port=free_port())
    async with serving(settings) as (app, _):
        drain = DrainMiddleware(app, lambda: app.state.context.draining, 1 << 20, app.state.context.plane)
        front = RequestIdMiddleware(drain)  # as service/frontend/process.py serves it: the drain's 503s name the id
        transport = httpx.ASGITransport(app=front, raise_app_exceptions=False)  # a 500 is an answer here
        url = f"127.0.0.1:{settings.grpc_port}"
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://fusionserve", timeout=60) as http,
            openai.AsyncOpenAI(
                base_url="http://fusionserve/v1",
                api_key="-",
                max_retries=0,
                http_client=httpx.AsyncClient(transport=transport),
            ) as sdk,  # fmt: skip
        ):
            grpc_client = triton_aio.InferenceServerClient(url)
            try:
                yield Served(app, front, http, sdk, grpc_client, url)
            finally:
                await grpc_client.close()


async def answers(served: Served, headers: dict | None = None, http: httpx.AsyncClient | None = None) -> dict:
    """Each protocol's answer to one text item: (status, the error message, the field named, the whole body)."""
    http, headers = http or served.http, headers or {}
    out = {}
    v1 = await http.post(V1, json=V1_BODY, headers=headers)
    error = v1.json().get("error", {})
    out["v1"] = (v1.status_code, error.get("message"), error.get("field"), v1)
    v2 = await http.post(V2, json=V2_BODY, headers=headers)
    message = v2.json().get("error")
    out["v2"] = (v2.status_code, message, message, v2)
    try:
        await served.sdk.embeddings.create(model="tiny", input="one two", extra_headers=headers)
        out["openai"] = (200, None, None, None)
    except openai.APIStatusError as refused:
        out["openai"] = (refused.status_code, refused.body["message"], refused.body["param"], refused)
    try:
        await served.grpc.infer("tiny", tensors([{"text": "one two"}], ["text"]), headers=headers)
        out["grpc"] = ("OK", None, None, None)
    except InferenceServerException as refused:
        out["grpc"] = (refused.status(), refused.message(), refused.message(), refused)
    return out


@pytest.mark.parametrize("bad", ["0", "-5", "soon", "nan", "3600001"])
async def test_the_same_bad_timeout_header_is_the_same_422_naming_it_on_every_protocol(served, bad):
    got = await answers(served, {HEADER: bad})
    statuses = {protocol: status for protocol, (status, *_) in got.items()}
    assert statuses == {"v1": 422, "v2": 422, "openai": 422, "grpc": "StatusCode.INVALID_ARGUMENT"}
    messages = {message for _, message, _, _ in got.values()}
    assert messages == {f"{HEADER} must be a number of milliseconds in (0, 3600000]"}  # one rule, one message
    assert got["v1"][2] == HEADER and got["openai"][2] == HEADER and HEADER in got["v2"][2]


async def test_a_bad_header_is_judged_before_the_door_on_every_protocol(served):
    """The cycle's order everywhere: the header (check), then the door; at capacity, a bad header is still 422."""
    _at_capacity(served.app.state.context.plane, in_flight=10_000, rate=10)
    async with served.client(port=2) as http:
        bad = await answers(served, {HEADER: "soon"}, http)
    statuses = {protocol: status for protocol, (status, *_) in bad.items()}
    assert statuses == {"v1": 422, "v2": 422, "openai": 422, "grpc": "StatusCode.INVALID_ARGUMENT"}
    before = door_counts(served.app)
    async with served.client(port=3) as v1, served.client(port=4) as v2:  # the door holds a refused client
        refused = [await v1.post(V1, json=V1_BODY, headers={HEADER: "5000"}),
                   await v2.post(V2, json=V2_BODY, headers={HEADER: "5000"})]  # fmt: skip
    assert [r.status_code for r in refused] == [429, 429] and refused[1].json()["error"].startswith("model 'tiny'")
    assert door_counts(served.app) == (before[0] + 1, before[1] + 1, before[2] + 2)  # each refusal counted once


def door_counts(app) -> tuple[float, float, float]:
    """requests_total of v1 embed and V2 infer with status 429; rejected_total{reason="queue_full"}."""
    requests = [metric(app, "fusionserve_requests_total", model="tiny", endpoint=e, status="429") for e in
                ("embed", "v2_infer")]  # fmt: skip
    return *requests, metric(app, "fusionserve_rejected_total", model="tiny", reason="queue_full")


async def test_the_v2_timeout_parameter_is_judged_alike_over_rest_and_grpc(served):
    async with grpc.aio.insecure_channel(served.grpc_url) as channel:
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        for value, accepted in ((2.5e6, True), (5_000_000, True), (0, False), (3.6e9 + 1, False)):
            rest = await served.http.post(V2, json=V2_BODY | {"parameters": {"timeout": value}})
            message = pb2.ModelInferRequest(model_name="tiny")
            text = message.inputs.add(name="text", datatype="BYTES", shape=[1])
            text.contents.bytes_contents.append(b"one two")
            if isinstance(value, float):
                message.parameters["timeout"].double_param = value  # a float, as REST's JSON may carry
            else:
                message.parameters["timeout"].int64_param = value  # what tritonclient's infer(timeout=…) sends
            if accepted:
                assert rest.status_code == 200, rest.text
                assert (await stub.ModelInfer(message)).outputs
                continue
            assert rest.status_code == 422 and rest.json()["error"].startswith(PARAMETER)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ModelInfer(message)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert caught.value.details() == rest.json()["error"]


def counts(app, protocol: str) -> tuple[float, float]:
    """(requests_total of this protocol's endpoint, status 503; rejected_total{reason="draining"}) of the model."""
    model = "unknown" if protocol == "openai" else "tiny"  # OpenAI's model is in the body, unread when refused
    requests = metric(app, "fusionserve_requests_total", model=model, endpoint=ENDPOINTS[protocol], status="503")
    return requests, metric(app, "fusionserve_rejected_total", model="tiny", reason="draining")


async def test_a_draining_server_refuses_in_each_protocols_shape_counted_once(served):
    served.app.state.context.draining = True
    before = {protocol: counts(served.app, protocol) for protocol in ENDPOINTS}
    got = await answers(served)
    v1, v2, sdk, rpc = (got[p][3] for p in ("v1", "v2", "openai", "grpc"))
    assert v1.status_code == 503 and without_request_id(v1) == {
        "error": {"type": "draining", "message": DRAINING, "field": None}
    }
    assert v2.status_code == 503 and without_request_id(v2) == {"error": DRAINING}
    assert isinstance(sdk, openai.InternalServerError) and sdk.status_code == 503
    assert sdk.body.pop("request_id") == sdk.response.headers["x-request-id"]
    assert sdk.body == {"message": DRAINING, "type": "server_error", "param": None, "code": "draining"}
    assert rpc.status() == "StatusCode.UNAVAILABLE" and rpc.message() == DRAINING
    for response in (v1, v2, sdk.response):
        assert response.headers["connection"] == "close"
    requests_before, rejected_before = before["v1"]
    for protocol in ENDPOINTS:
        requests, _ = counts(served.app, protocol)
        assert requests == before[protocol][0] + 1, protocol
    # v1, V2 REST and gRPC name the model in the URL or the message; OpenAI's is in the unread body
    assert counts(served.app, "v1")[1] == rejected_before + 3


@pytest.mark.parametrize(
    "method, path, status, shape",
    [
        ("POST", "/v2/models/tiny/nonsense", 404, "v2"),
        ("GET", "/v2/models/tiny/infer", 405, "v2"),
        ("POST", "/v2", 405, "v2"),
        ("GET", "/v1/embeddings", 405, "openai"),
        ("POST", "/v1/embeddings/more", 404, "openai"),
        ("GET", "/v1/nothing", 404, "v1"),
    ],
)
async def test_starlettes_own_404_and_405_answer_in_the_paths_protocol_shape(served, method, path, status, shape):
    response = await served.http.request(method, path)
    assert response.status_code == status
    phrase = {404: "Not Found", 405: "Method Not Allowed"}[status]
    kind = {404: "not_found", 405: "method_not_allowed"}[status]
    expected = {
        "v1": {"error": {"type": kind, "message": phrase, "field": None}},
        "v2": {"error": phrase},
        "openai": {"error": {"message": phrase, "type": "invalid_request_error", "param": None, "code": kind}},
    }[shape]
    assert without_request_id(response) == expected
    if status == 405:
        assert response.headers["allow"]  # Starlette's header survives the re-shaping


async def test_an_unexpected_error_is_a_500_in_each_protocols_shape_counted_once(served, monkeypatch):
    async def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(served.app.state.context.plane, "prepare", broken)
    before = {p: metric(served.app, "fusionserve_requests_total", model="tiny", endpoint=e, status="500")
              for p, e in ENDPOINTS.items()}  # fmt: skip
    got = await answers(served)
    v1, v2, sdk, rpc = (got[p][3] for p in ("v1", "v2", "openai", "grpc"))
    assert v1.status_code == 500 and v1.json()["error"]["type"] == "internal_error"
    assert v2.status_code == 500 and isinstance(v2.json()["error"], str) and "a bug" not in v2.text
    assert isinstance(sdk, openai.InternalServerError) and sdk.body["type"] == "server_error"
    assert rpc.status() == "StatusCode.INTERNAL"
    for protocol, endpoint in ENDPOINTS.items():
        after = metric(served.app, "fusionserve_requests_total", model="tiny", endpoint=endpoint, status="500")
        assert after == before[protocol] + 1, protocol
