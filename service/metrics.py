"""Every Prometheus metric (the README's Metrics table), defined once (prefix fusionserve_).

Each app gets its own CollectorRegistry so several apps (tests, benchmarks) can live in one process. In
multi-process mode the supervisor sets PROMETHEUS_MULTIPROC_DIR for its children: every process writes its
series there (prometheus_client's multiprocess mode) and any front-end's /metrics shows them all — counters
and histograms summed over processes, gauges by each one's `multiprocess_mode`.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "fusionserve_"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
RATIO_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
REJECT_REASONS = ("queue_full", "deadline", "invalid", "too_large", "body_budget", "draining")
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        reg = self.registry
        self.requests_total = Counter(
            PREFIX + "requests_total",
            "HTTP inference requests by outcome",
            ["model", "endpoint", "status"],
            registry=reg,
        )
        self.request_duration = Histogram(
            PREFIX + "request_duration_seconds",
            "End-to-end request latency",
            ["model", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.stage_duration = Histogram(
            PREFIX + "stage_duration_seconds",
            "Per-item time spent in each stage",
            ["model", "stage", "modality"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.batch_size = Histogram(
            PREFIX + "batch_size",
            "Items per executed batch",
            ["model", "component"],
            buckets=BATCH_BUCKETS,
            registry=reg,
        )
        self.batch_padding_ratio = Histogram(
            PREFIX + "batch_padding_ratio",
            "Share of padded cells in a variable-length batch",
            ["model", "component"],
            buckets=RATIO_BUCKETS,
            registry=reg,
        )
        self.queue_depth = Gauge(
            PREFIX + "queue_depth",
            "Items waiting in a component's queue",
            ["model", "component"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.rejected_total = Counter(
            PREFIX + "rejected_total", "Items rejected before inference", ["model", "reason"], registry=reg
        )
        self.internal_errors = Counter(
            PREFIX + "internal_errors_total",
            "Failures that were the server's (answered 500 with a request id, or a malformed engine message dropped)",
            ["where", "kind"],  # where: http | grpc | engine; kind: unexpected | malformed
            registry=reg,
        )
        self.inflight_requests = Gauge(
            PREFIX + "inflight_requests", "Inference requests being handled", registry=reg, multiprocess_mode="livesum"
        )
        self.model_info = Gauge(
            PREFIX + "model_info",
            "1 for each loaded model version and the provider it runs on",
            ["model", "version", "provider"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.model_load_seconds = Gauge(
            PREFIX + "model_load_seconds",
            "Time to load, verify and warm up a model version",
            ["model", "version"],
            registry=reg,
            multiprocess_mode="livemax",
        )

    def reject(self, model: str, reason: str) -> None:
        assert reason in REJECT_REASONS, reason
        self.rejected_total.labels(model=model, reason=reason).inc()

    def render(self) -> tuple[bytes, str]:
        if os.environ.get(MULTIPROCESS_DIR):  # every process's series, read from their files
            gathered = CollectorRegistry()
            multiprocess.MultiProcessCollector(gathered)
            return generate_latest(gathered), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
