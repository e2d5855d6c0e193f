"""HTTP's request span is FastAPI's own (its native OpenTelemetry: the client's traceparent continued, named by
method and route, with the semantic-convention attributes and the status); `telemetry()` configures it, and
RequestSpanMiddleware adds what FastAPI cannot know: the request id and the protocol. Both only when tracing is
on (service/frontend/app.py), so an untraced server has no extra middleware and FastAPI's per-request check
finds everything disabled."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from service import tracing
from service.errors import REQUEST_ID

OFF = {"tracing": False, "metrics": False, "logs": False}  # our metrics are Prometheus' (service/metrics.py)


def telemetry() -> dict:
    """FastAPI(telemetry=…): spans of our provider only; no OTel metrics or logs, no per-dependency spans."""
    if not tracing.ENABLED:
        return OFF
    return {**OFF, "tracing": True, "tracer_provider": tracing.provider(), "operation_spans": False}


class RequestSpanMiddleware:
    """Inside RequestIdMiddleware (which sets the id it reads), outside every refusal, so a 401 / 413 / 429 span
    names its request too."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            from opentelemetry import trace

            span = trace.get_current_span()  # FastAPI's server span of this request
            span.set_attribute("fusionserve.request_id", REQUEST_ID.get() or "")
            span.set_attribute("protocol", "http")
        await self.app(scope, receive, send)
