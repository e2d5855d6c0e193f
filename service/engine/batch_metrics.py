"""The Prometheus series one Batcher writes, labelled once per (model, component)."""

from __future__ import annotations

import asyncio

from service.engine.batch_window import padding_ratio
from service.metrics import Metrics, observe_many, observe_repeated


class BatcherMetrics:
    def __init__(self, metrics: Metrics, model: str, component: str, padded: bool):
        labels = {"model": model, "component": component}
        self._metrics, self._model = metrics, model
        self.depth = metrics.queue_depth.labels(**labels)  # items waiting, set by the batcher
        self._size = metrics.batch_size.labels(**labels)
        # Fixed-size components get no padding series at all rather than an always-empty one.
        self._padding = metrics.batch_padding_ratio.labels(**labels) if padded else None
        self._queue = metrics.stage_duration.labels(model=model, stage="queue", modality=component)
        self._infer = metrics.stage_duration.labels(model=model, stage="infer", modality=component)
        self.depth.set(0)
        self._depth_pending = False  # a depth write is scheduled for the end of this turn

    def depth_soon(self, queue) -> None:
        """The depth gauge written once per event-loop turn, not once per arriving item (in multiprocess mode
        a write is a locked file update): a burst of 32 arrivals costs one write."""
        if not self._depth_pending:
            self._depth_pending = True
            asyncio.get_running_loop().call_soon(self._write_depth, queue)

    def _write_depth(self, queue) -> None:
        self._depth_pending = False
        self.depth.set(len(queue))

    def reject(self, reason: str) -> None:
        self._metrics.reject(self._model, reason)

    def batch(self, lengths: list[int], waits_s: list[float], infer_s: float) -> None:
        """One batch ran (a failed one too: it still spent its compute); per item its queue wait."""
        self._size.observe(len(lengths))
        if self._padding is not None:
            self._padding.observe(padding_ratio(lengths))
        observe_many(self._queue, waits_s)  # per item, written once per batch
        observe_repeated(self._infer, infer_s, len(waits_s))
