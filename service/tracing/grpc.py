"""The request's server span on gRPC: the W3C traceparent / tracestate of the invocation metadata continued."""

from __future__ import annotations

from service import tracing
from service.errors import REQUEST_ID


def server_span(method: str, metadata: dict):
    """A SERVER span for one RPC (a no-op when tracing is off); `metadata`: the invocation metadata."""
    if not tracing.ENABLED:
        return tracing._NULL
    from opentelemetry.trace import SpanKind

    carrier = {name: metadata[name] for name in ("traceparent", "tracestate") if isinstance(metadata.get(name), str)}
    attributes = {"rpc.system": "grpc", "rpc.service": "inference.GRPCInferenceService", "rpc.method": method,
                  "protocol": "grpc", "fusionserve.request_id": REQUEST_ID.get() or ""}  # fmt: skip
    return tracing.span(f"inference.GRPCInferenceService/{method}", attributes, kind=SpanKind.SERVER,
                        context=tracing.extract(carrier))  # fmt: skip


def status(code_name: str) -> None:
    """The RPC's status code on the current span."""
    if tracing.ENABLED:
        from opentelemetry import trace

        trace.get_current_span().set_attribute("rpc.grpc.status_code", code_name)
