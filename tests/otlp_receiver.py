"""A real OTLP trace receiver for tests: http/protobuf (POST /v1/traces) and gRPC (TraceService/Export), both
decoding the ExportTraceServiceRequest the SDK's exporters send, the spans kept for the test to wait on.

    with OtlpReceiver("grpc") as receiver:          # or "http/protobuf"
        env = receiver.environment()                # OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL for a server
        spans = receiver.wait_for(lambda spans: ..., timeout_s=20)
"""

from __future__ import annotations

import gzip
import threading
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str  # hex, as in a traceparent
    span_id: str
    parent_id: str  # "" for a root span
    kind: int
    attributes: dict
    links: list[tuple[str, str]]  # (trace id, span id)
    service: str  # the resource's service.name
    resource: dict = field(default_factory=dict)


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind is not None else None


def _attributes(pairs) -> dict:
    return {pair.key: _value(pair.value) for pair in pairs}


def spans_of(request: trace_service_pb2.ExportTraceServiceRequest) -> list[ReceivedSpan]:
    received = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                links = [(link.trace_id.hex(), link.span_id.hex()) for link in span.links]
                received.append(ReceivedSpan(span.name, span.trace_id.hex(), span.span_id.hex(),
                                             span.parent_span_id.hex(), span.kind, _attributes(span.attributes),
                                             links, resource.get("service.name", ""), resource))  # fmt: skip
    return received


class OtlpReceiver:
    def __init__(self, protocol: str = "http/protobuf"):
        self.protocol = protocol
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._changed = threading.Condition()
        self._http: ThreadingHTTPServer | None = None
        self._grpc: grpc.Server | None = None
        self.port = 0

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self._changed:
            self.requests += 1
            self.spans += spans_of(request)
            self._changed.notify_all()

    def wait_for(self, predicate, timeout_s: float = 20.0) -> list[ReceivedSpan]:
        """The spans once `predicate(spans)` holds; AssertionError with what arrived after `timeout_s`."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(list(self.spans)), timeout=timeout_s):
                names = [(s.name, s.trace_id[:8]) for s in self.spans]
                raise AssertionError(f"the receiver did not get the expected spans in {timeout_s} s; it has {names}")
            return list(self.spans)

    def environment(self) -> dict[str, str]:
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.port}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": self.protocol, "OTEL_BSP_SCHEDULE_DELAY": "50"}  # fmt: skip

    def __enter__(self) -> OtlpReceiver:
        if self.protocol == "grpc":
            self._grpc = grpc.server(futures.ThreadPoolExecutor(2))
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Service(self), self._grpc)
            self.port = self._grpc.add_insecure_port("127.0.0.1:0")
            self._grpc.start()
        else:
            self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
            self.port = self._http.server_address[1]
            threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


class _Service(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver):
        self.receiver = receiver

    def Export(self, request, context):  # noqa: N802 — the generated service's name
        self.receiver.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def _handler(receiver: OtlpReceiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 — http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_response(404 if self.path != "/v1/traces" else 415)
                self.end_headers()
                return
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            receiver.add(request)
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_):  # quiet
            pass

    return Handler
