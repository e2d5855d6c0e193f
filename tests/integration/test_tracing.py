"""Traces end to end: real `fusionserve serve` process trees exporting to a real OTLP receiver in this test
(tests/otlp_receiver.py decodes the ExportTraceServiceRequest protobuf). One process over http/protobuf, two
front-ends + an engine over grpc: a request's traceparent is continued, its spans form the chain request →
decode / queue / batch / fusion (the engine's in the same trace), the batch span links to the request, on HTTP
and on gRPC; the request id comes back in gRPC metadata, errors included. Spans are waited for, never slept on
(OTEL_BSP_SCHEDULE_DELAY is 50 ms here)."""

from __future__ import annotations

import base64
import secrets

import grpc
import httpx
import pytest

from service.frontend.api.v2 import grpc_predict_v2_pb2 as pb2
from service.frontend.api.v2 import grpc_predict_v2_pb2_grpc as pb2_grpc
from tests.bundles import sample_inputs
from tests.integration.multiprocess import Server
from tests.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.slow
SERVER_KIND = 2  # opentelemetry.proto Span.SpanKind SPAN_KIND_SERVER


@pytest.fixture(scope="module", params=[(0, "http/protobuf"), (2, "grpc")], ids=["one-process", "multi-process"])
def traced(request, tiny_models, tmp_path_factory):
    workers, protocol = request.param
    with OtlpReceiver(protocol) as receiver:
        server = Server(tiny_models, tmp_path_factory.mktemp("logs") / "server.log", env=receiver.environment(),
                        workers=workers)  # fmt: skip
        try:
            yield server, receiver, workers
        finally:
            assert server.stop() == 0, server.tail()


def traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{parent_id}-01", trace_id, parent_id


def trace_spans(receiver: OtlpReceiver, trace_id: str, names: set[str]) -> dict[str, list]:
    """The trace's spans by name, once every name in `names` has arrived."""

    def complete(spans) -> bool:
        return names <= {s.name for s in spans if s.trace_id == trace_id}

    by_name: dict[str, list] = {}
    for span in receiver.wait_for(complete, timeout_s=30):
        if span.trace_id == trace_id:
            by_name.setdefault(span.name, []).append(span)
    return by_name


def assert_work_chain(by_name: dict, request_span, workers: int) -> None:
    """decode under the request; queue, batch and fusion under the request (one process) or under the engine's
    span, itself under the request (multi-process); the batch linked to the span that submitted to it."""
    by_id = {s.span_id: s for spans in by_name.values() for s in spans}
    assert all(d.parent_id == request_span.span_id for d in by_name["decode"])
    assert by_name["decode"][0].attributes["bytes"] > 0
    submitter = request_span
    if workers:
        (engine,) = by_name["engine tiny"]
        assert engine.parent_id == request_span.span_id and engine.kind == SERVER_KIND
        assert engine.resource["fusionserve.process"] == "engine"
        assert request_span.resource["fusionserve.process"] == "frontend"
        submitter = engine
    assert {q.attributes["modality"] for q in by_name["queue"]} >= {"image", "text", "audio"}
    assert all(q.parent_id == submitter.span_id for q in by_name["queue"])
    for batch in by_name["batch"] + by_name["fusion"]:
        assert (batch.trace_id, submitter.span_id) in batch.links
        assert batch.parent_id in by_id and batch.attributes["batch.size"] >= 1
    assert request_span.service == "fusionserve"


def test_http_request_continues_the_callers_trace(traced):
    server, receiver, workers = traced
    header, trace_id, parent_id = traceparent()
    raw = sample_inputs(3)
    item = {"image": base64.b64encode(raw["image"]).decode(), "text": raw["text"],
            "audio": base64.b64encode(raw["audio"]).decode()}  # fmt: skip
    answer = httpx.post(f"{server.url}/v1/models/tiny/classify", json={"inputs": [item]},
                        headers={"traceparent": header, "x-request-id": "trace-me-1"}, timeout=30)  # fmt: skip
    assert answer.status_code == 200, answer.text
    names = {"POST /v1/models/{model}/classify", "decode", "queue", "batch", "fusion"} | (
        {"engine tiny"} if workers else set()
    )
    by_name = trace_spans(receiver, trace_id, names)
    (request_span,) = by_name["POST /v1/models/{model}/classify"]
    assert request_span.parent_id == parent_id and request_span.kind == SERVER_KIND
    assert request_span.attributes["http.response.status_code"] == 200
    assert request_span.attributes["fusionserve.request_id"] == "trace-me-1"
    assert request_span.attributes["model"] == "tiny"
    assert_work_chain(by_name, request_span, workers)


def infer_request(model: str = "tiny") -> pb2.ModelInferRequest:
    raw = sample_inputs(5)
    values = {"image": raw["image"], "text": raw["text"].encode(), "audio": raw["audio"]}
    tensors = [pb2.ModelInferRequest.InferInputTensor(name=name, datatype="BYTES", shape=[1],
                                                      contents=pb2.InferTensorContents(bytes_contents=[value]))
               for name, value in values.items()]  # fmt: skip
    return pb2.ModelInferRequest(model_name=model, inputs=tensors)


def test_grpc_request_continues_the_trace_and_names_its_id(traced):
    server, receiver, workers = traced
    header, trace_id, parent_id = traceparent()
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb2_grpc.GRPCInferenceServiceStub(channel)
        metadata = (("traceparent", header), ("x-request-id", "grpc-trace-1"))
        _, call = stub.ModelInfer.with_call(infer_request(), metadata=metadata, timeout=30)
        assert ("x-request-id", "grpc-trace-1") in call.initial_metadata()
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(infer_request("nope"), metadata=(("x-request-id", "grpc-missing"),), timeout=30)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert ("x-request-id", "grpc-missing") in refused.value.trailing_metadata()
    name = "inference.GRPCInferenceService/ModelInfer"
    by_name = trace_spans(receiver, trace_id, {name, "decode", "queue", "batch", "fusion"})
    (request_span,) = by_name[name]
    assert request_span.parent_id == parent_id and request_span.attributes["protocol"] == "grpc"
    assert request_span.attributes["fusionserve.request_id"] == "grpc-trace-1"
    assert_work_chain(by_name, request_span, workers)
