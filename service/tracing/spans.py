"""The spans of a request's work, each a few lines at its call site: decode (per item, in the preprocess
thread), queue (per item and component: its wait from submit to its batch starting), batch (one per batcher
run, linked to every request it carries — one span with N links, not N spans) and fusion. Every helper is
a no-op at its first check when tracing is off."""

from __future__ import annotations

import time
from collections.abc import Callable

from service import tracing
from service.errors import REQUEST_ID


def annotate_request(model: str, version: str | None, endpoint: str) -> None:
    """The model and protocol on the request's server span (HTTP or gRPC)."""
    if not tracing.ENABLED:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    span.set_attribute("model", model)
    span.set_attribute("fusionserve.endpoint", endpoint)
    if version is not None:
        span.set_attribute("model.version", version)


def traced_prepare(prepare: Callable) -> Callable:
    """`prepare` (raw item → PreparedItem, run in a thread) under a decode span of the caller's trace: the
    context is taken here, on the event loop, since an executor's thread does not inherit it."""
    if not tracing.ENABLED:
        return prepare
    from opentelemetry import context

    parent = context.get_current()

    def traced(raw, *args):
        sizes = {name: len(part) for name, part in raw.parts.items()}
        attributes = {"modality": ",".join(sorted(sizes)), "bytes": sum(sizes.values())}
        with tracing.span("decode", attributes, context=parent):
            return prepare(raw, *args)

    return traced


class Waiting:
    """What a queued item keeps for its trace: the submitting span's context and when it queued (wall ns)."""

    __slots__ = ("context", "link", "queued_ns", "request_id")

    def __init__(self):
        from opentelemetry import context, trace

        self.context = context.get_current()
        self.link = trace.get_current_span().get_span_context()
        self.queued_ns = time.time_ns()
        self.request_id = REQUEST_ID.get()


def waiting() -> Waiting | None:
    """Taken at submit; None when tracing is off (the batcher stores it untouched)."""
    return Waiting() if tracing.ENABLED else None


def batch_span(component: str, model: str, waits: list[Waiting | None]):
    """The batch's span, linked to each request it carries; each item's queue span ends as it starts."""
    if not tracing.ENABLED:
        return tracing._NULL
    from opentelemetry.trace import Link

    now = time.time_ns()
    tracer = tracing.tracer()
    links = []
    for wait in waits:
        if wait is None:
            continue
        queue = tracer.start_span("queue", context=wait.context, start_time=wait.queued_ns,
                                  attributes={"modality": component, "model": model})  # fmt: skip
        queue.end(end_time=now)
        if wait.link.is_valid:
            links.append(Link(wait.link, {"fusionserve.request_id": wait.request_id or ""}))
    attributes = {"component": component, "modality": component, "model": model, "batch.size": len(waits)}
    name = "fusion" if component == "fusion" else "batch"
    # parented by its first request (a trace view shows it under that request), linked to all of them
    first = next((wait.context for wait in waits if wait is not None), None)
    return tracer.start_as_current_span(name, context=first, attributes=attributes, links=links, start_time=now)


def inline_fusion(rows: int, seconds: float) -> None:
    """Fusion run inside its encoder's batch call (EncodeThenFuse): a span of the time it took there."""
    if not tracing.ENABLED:
        return
    end = time.time_ns()
    attributes = {"component": "fusion", "fusion.inline": True, "batch.size": rows}
    span = tracing.tracer().start_span("fusion", attributes=attributes, start_time=end - int(seconds * 1e9))
    span.end(end_time=end)
