"""Shared fakes for the batcher tests: a recording run_batch with a gate, and metric/timing helpers.

Timing-sensitive cases hold the worker with a threading.Event gate instead of relying on sleeps, so
what queues up while a batch computes is decided by the test, not by the scheduler.
"""

from __future__ import annotations

import asyncio
import threading
import time

from service.engine.batcher import Batcher
from service.metrics import Metrics

MODEL, COMPONENT = "m", "text"
LABELS = {"model": MODEL, "component": COMPONENT}


class Recorder:
    """A fake run_batch: records payloads, can be held shut by a gate, fails on payload 'boom'."""

    def __init__(self, sleep_s: float = 0.0, gated: bool = False):
        self.calls: list[list] = []
        self.threads: list[str] = []
        self.sleep_s = sleep_s
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.entered = threading.Event()

    def __call__(self, payloads: list) -> list:
        self.calls.append(list(payloads))
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        assert self.gate.wait(timeout=10), "test forgot to open the gate"
        time.sleep(self.sleep_s)
        if "boom" in payloads:
            raise ValueError("boom in batch")
        if "short" in payloads:
            return []
        return [f"out-{p}" for p in payloads]

    def computed(self) -> list:
        return [p for call in self.calls for p in call]

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 5)


def sample(metrics: Metrics, name: str, labels: dict | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels if labels is not None else LABELS)


def depth_gauge(metrics: Metrics) -> float | None:
    return sample(metrics, "fusionserve_queue_depth")


def rejected(metrics: Metrics, reason: str) -> float | None:
    return sample(metrics, "fusionserve_rejected_total", {"model": MODEL, "reason": reason})


def soon(seconds: float = 5.0) -> float:
    return time.monotonic() + seconds


async def wait_until(cond, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.005)


async def start_blocked(batcher: Batcher, rec: Recorder, payload="blocker") -> asyncio.Task:
    """Put one item into compute and keep it there until rec.gate is set."""
    task = asyncio.create_task(batcher.submit(payload, deadline=soon()))
    await rec.wait_entered()
    return task
