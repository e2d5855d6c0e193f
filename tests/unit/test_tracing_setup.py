"""service/tracing's switch: off (no SDK module loaded, no provider) without an OTLP endpoint; on, spans reach
a real receiver over either OTLP protocol with the resource and sampler the standard variables name."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.otlp_receiver import OtlpReceiver

OFF = """
import sys
from service import tracing
from service.frontend.app import create_app
from service.tracing import spans
app = create_app()
assert not tracing.ENABLED and tracing.tracer() is None
assert spans.waiting() is None and tracing.inject({}) == {}
from opentelemetry import trace
assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk") or m.startswith("opentelemetry.exporter"))
assert not loaded, loaded
print("off")
"""

ON = """
from service import tracing
from service.tracing import spans
assert tracing.configure("engine")
with tracing.span("outer", {"k": 1}):
    carrier = tracing.inject({})
    with spans.batch_span("text", "tiny", [spans.waiting()]):
        pass
tracing.shutdown()  # flushes
print(carrier["traceparent"])
"""


BATCH = """
from service import tracing
from service.tracing import spans
assert tracing.configure("engine")
waits = []
for n in range(3):
    with tracing.span(f"request {n}"):
        waits.append(spans.waiting())
with spans.batch_span("image", "tiny", waits):
    pass
tracing.shutdown()
"""


def run(code: str, env: dict) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], env=base | env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_off_without_an_endpoint_builds_nothing(tmp_path):
    assert run(OFF, {"FUSIONSERVE_MODEL_DIR": str(tmp_path)}) == "off"


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_on_exports_over_either_protocol(protocol):
    with OtlpReceiver(protocol) as receiver:
        env = receiver.environment() | {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"}
        traceparent = run(ON, env)
        spans = receiver.wait_for(lambda got: len(got) >= 3, timeout_s=20)
    by_name = {s.name: s for s in spans}
    outer, queue, batch = by_name["outer"], by_name["queue"], by_name["batch"]
    assert traceparent.split("-")[1] == outer.trace_id == batch.trace_id
    assert queue.parent_id == outer.span_id and batch.links == [(outer.trace_id, outer.span_id)]
    assert outer.service == "fusionserve" and outer.resource["deployment.environment"] == "test"
    assert outer.resource["fusionserve.process"] == "engine" and outer.attributes == {"k": 1}


def test_service_name_and_sampler_from_the_environment():
    with OtlpReceiver("http/protobuf") as receiver:
        run(ON, receiver.environment() | {"OTEL_SERVICE_NAME": "edge", "OTEL_TRACES_SAMPLER": "always_off"})
        run(ON, receiver.environment() | {"OTEL_SERVICE_NAME": "edge"})
        spans = receiver.wait_for(lambda got: len(got) >= 3, timeout_s=20)
    assert len(spans) == 3 and {s.service for s in spans} == {"edge"}  # the sampled-out run sent none


def test_one_batch_span_links_every_request_it_carries():
    with OtlpReceiver("grpc") as receiver:
        run(BATCH, receiver.environment())
        spans = receiver.wait_for(lambda got: len(got) == 7, timeout_s=20)  # 3 requests, 3 queues, 1 batch
    requests = {s.name: s for s in spans if s.name.startswith("request")}
    (batch,) = [s for s in spans if s.name == "batch"]
    assert sorted(batch.links) == sorted((r.trace_id, r.span_id) for r in requests.values())
    assert batch.parent_id == requests["request 0"].span_id and batch.attributes["batch.size"] == 3
    queues = [s for s in spans if s.name == "queue"]
    assert sorted(q.parent_id for q in queues) == sorted(r.span_id for r in requests.values())
