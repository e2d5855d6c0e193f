"""Every Prometheus metric (the README's Metrics table), defined once (prefix fusionserve_).

Each app gets its own CollectorRegistry so several apps (tests, benchmarks) can live in one process. In
multi-process mode the supervisor sets PROMETHEUS_MULTIPROC_DIR for its children: every process writes its
series there (prometheus_client's multiprocess mode) and any front-end's /metrics shows them all — counters
and histograms summed over processes, gauges by each one's `multiprocess_mode`.
"""

from __future__ import annotations

import bisect
import collections
import os
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "fusionserve_"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
RATIO_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
REJECT_REASONS = ("queue_full", "deadline", "invalid", "too_large", "body_budget", "draining")
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# what video decoding measures (PreparedItem.stats) → its stage in stage_duration_seconds (modality "video")
VIDEO_STAGES = {"video_probe_s": "video_probe", "video_frames_s": "video_frames", "video_audio_s": "video_audio"}
VIDEO_FRAMES = {"video_frames_decoded": "decoded", "video_frames_kept": "kept"}  # stats key → `kind` label


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
        self.video_seconds = Counter(
            PREFIX + "video_seconds_total", "Seconds of video decoded (every video item's duration)", ["model"],
            registry=reg,
        )  # fmt: skip
        self.video_frames = Counter(
            PREFIX + "video_frames_total",
            "Video frames decoded, and of those kept for the image encoder (kind: decoded | kept)",
            ["model", "kind"],
            registry=reg,
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

    def video_decoded(self, model: str, stats: dict[str, float]) -> None:
        """One video item's decoding (its PreparedItem.stats): seconds, frames decoded / kept, time per stage."""
        self.video_seconds.labels(model).inc(stats.get("video_seconds", 0.0))
        for key, kind in VIDEO_FRAMES.items():
            self.video_frames.labels(model, kind).inc(stats.get(key, 0))
        for key, stage in VIDEO_STAGES.items():
            if key in stats:
                self.stage_duration.labels(model, stage, "video").observe(stats[key])

    def render(self) -> tuple[bytes, str]:
        if os.environ.get(MULTIPROCESS_DIR):  # every process's series, read from their files
            gathered = CollectorRegistry()
            multiprocess.MultiProcessCollector(gathered)
            return generate_latest(gathered), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def observe_many(histogram, amounts: Sequence[float], times: int = 1) -> None:
    """Observe every amount with one write per bucket touched and one to the sum, instead of two writes per
    amount: prometheus_client has no batch observe, and in multiprocess mode every write is a locked mmap
    update. Each amount counts `times` times, as if observed one by one (tests/unit/test_metrics_batched.py)."""
    buckets, bounds = getattr(histogram, "_buckets", None), getattr(histogram, "_upper_bounds", None)
    if buckets is None or bounds is None or len(buckets) != len(bounds):  # internals unknown: one at a time
        for amount in amounts:
            for _ in range(times):
                histogram.observe(amount)
        return
    histogram._sum.inc(sum(amounts) * times)
    for index, count in collections.Counter(bisect.bisect_left(bounds, amount) for amount in amounts).items():
        if index < len(buckets) and times:  # NaN lands in no bucket, as observe does
            buckets[index].inc(count * times)


def observe_repeated(histogram, amount: float, times: int) -> None:
    """`times` observations of one amount (a batch's infer time, once per item) in two writes."""
    observe_many(histogram, [amount], times)
