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
    # the status comes from the RPC's code (status() below): a refusal's abort is no server error
    return tracing.span(f"inference.GRPCInferenceService/{method}", attributes, kind=SpanKind.SERVER,
                        context=tracing.extract(carrier), set_status_on_exception=False)  # fmt: skip


# the codes a gRPC server span marks as errors (OpenTelemetry's RPC semantic conventions)
SERVER_ERRORS = {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}


def status(code_name: str) -> None:
    """The RPC's status code on the current span; an error status for a server error only."""
    if tracing.ENABLED:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        span = trace.get_current_span()
        span.set_attribute("rpc.grpc.status_code", code_name)
        if code_name in SERVER_ERRORS:
            span.set_status(Status(StatusCode.ERROR, code_name))
