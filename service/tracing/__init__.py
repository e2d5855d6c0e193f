"""OpenTelemetry traces, off and free unless an OTLP endpoint is configured (the standard OTel variables).

    configure()                       # once per process; a no-op without OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT
    with span("decode", {...}): ...   # a child of the current span; nullcontext when tracing is off
    header = inject({})               # the current context as W3C traceparent / tracestate
    ctx = extract(headers)            # a remote parent (None when off or absent)

When off, nothing of the SDK is imported or built: every helper returns at its first `if not ENABLED` check,
so a request pays one global read per call site (bench/tracing.py measures it). When on, spans go through a
BatchSpanProcessor to the OTLP exporter of OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf, the default, or grpc);
the SDK itself reads the endpoint, headers, sampler (OTEL_TRACES_SAMPLER[_ARG]), OTEL_BSP_* and the resource
(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES); the provider flushes at interpreter exit (its atexit hook).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping

log = logging.getLogger("fusionserve")
ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
DEFAULT_SERVICE_NAME = "fusionserve"

ENABLED = False  # read at every call site: the whole cost of tracing when it is off
_provider = None
_tracer = None
_NULL = contextlib.nullcontext()


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    return any(environ.get(name) for name in ENDPOINT_VARS) and environ.get("OTEL_SDK_DISABLED", "").lower() != "true"


def protocol(environ: Mapping[str, str] = os.environ) -> str:
    for name in PROTOCOL_VARS:
        if environ.get(name):
            return environ[name].strip().lower()
    return "http/protobuf"


def _exporter(chosen: str):
    if chosen == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif chosen in ("http/protobuf", "http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={chosen!r}: expected 'http/protobuf' or 'grpc'")
    return OTLPSpanExporter()  # endpoint, headers, timeout, compression: from the environment


def configure(role: str = "server") -> bool:
    """Set up exporting when the environment asks for it (idempotent); whether tracing is on."""
    global ENABLED, _provider, _tracer
    if ENABLED or not wanted():
        return ENABLED
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"fusionserve.process": role}
    declared = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in declared:
        attributes["service.name"] = DEFAULT_SERVICE_NAME  # given attributes win over the env: only as default
    provider = TracerProvider(resource=Resource.create(attributes))  # sampler from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(_exporter(protocol())))
    trace.set_tracer_provider(provider)
    _provider, _tracer, ENABLED = provider, provider.get_tracer("fusionserve"), True
    log.info("tracing: exporting spans over OTLP (%s)", protocol())
    return True


def shutdown() -> None:
    """Flush and stop (also done at interpreter exit); tracing is off afterwards."""
    global ENABLED, _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    ENABLED, _provider, _tracer = False, None, None


def tracer():
    return _tracer


def provider():
    return _provider


def span(name: str, attributes: dict | None = None, **options):
    """A span of the current trace as a context manager (options: kind, context, links, start_time)."""
    if not ENABLED:
        return _NULL
    return _tracer.start_as_current_span(name, attributes=attributes, **options)


def inject(carrier: dict) -> dict:
    """The current span's context into `carrier` (traceparent, tracestate); unchanged when off."""
    if ENABLED:
        from opentelemetry.propagate import inject as _inject

        _inject(carrier)
    return carrier


def extract(carrier: Mapping[str, str]):
    """The remote parent a carrier names (W3C trace context), or None when off."""
    if not ENABLED:
        return None
    from opentelemetry.propagate import extract as _extract

    return _extract(carrier)
