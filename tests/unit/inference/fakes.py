"""Shared fakes for the batcher tests: a recording run_batch with a gate, and metric helpers.

What queues up while a batch computes is decided by the test: the worker is held by a threading.Event gate,
not by a sleep. Time is the fake clock's (tests/fake_clock.py): a batch "takes" `compute_s` because the
fake run_batch advances the clock by that much, so the queue and infer seconds a batch reports are exact.
"""

from __future__ import annotations

import asyncio
import threading

from service.engine.batcher import Batcher
from service.metrics import Metrics
from tests.fake_clock import FakeClock

MODEL, COMPONENT = "m", "text"
LABELS = {"model": MODEL, "component": COMPONENT}
LONG_S = 3600.0  # a deadline no test reaches unless it advances the clock that far
FAIL_S = 30.0  # wall-clock seconds before a wait that should end at once is reported as hanging


class Recorder:
    """A fake run_batch: records payloads, can be held shut by a gate, fails on payload 'boom'."""

    def __init__(self, gated: bool = False, clock: FakeClock | None = None, compute_s: float = 0.0):
        self.calls: list[list] = []
        self.threads: list[str] = []
        self.clock, self.compute_s = clock, compute_s
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.entered = threading.Event()

    def __call__(self, payloads: list) -> list:
        self.calls.append(list(payloads))
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        assert self.gate.wait(timeout=FAIL_S), "test forgot to open the gate"
        if self.clock is not None:
            self.clock.advance(self.compute_s)
        if "boom" in payloads:
            raise ValueError("boom in batch")
        if "short" in payloads:
            return []
        return [f"out-{p}" for p in payloads]

    def computed(self) -> list:
        return [p for call in self.calls for p in call]

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, FAIL_S), "run_batch was never called"


def sample(metrics: Metrics, name: str, labels: dict | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels if labels is not None else LABELS)


def depth_gauge(metrics: Metrics) -> float | None:
    return sample(metrics, "fusionserve_queue_depth")


def rejected(metrics: Metrics, reason: str) -> float | None:
    return sample(metrics, "fusionserve_rejected_total", {"model": MODEL, "reason": reason})


def submit(batcher: Batcher, clock: FakeClock, payload, **kw) -> asyncio.Task:
    """The payload's submit, started now, with a deadline no test reaches by accident."""
    return asyncio.create_task(batcher.submit(payload, deadline=clock.after(LONG_S), **kw))


async def arrive(batcher: Batcher, clock: FakeClock, payload) -> asyncio.Task:
    """submit(), admitted by the time this returns: a task's first step (admission is synchronous) runs in
    the loop iteration after its creation, so an arrival's time is the clock's reading at that step."""
    task = submit(batcher, clock, payload)
    await asyncio.sleep(0)  # one loop iteration
    return task


async def start_blocked(batcher: Batcher, rec: Recorder, clock: FakeClock, payload="blocker") -> asyncio.Task:
    """Put one item into compute and keep it there until rec.gate is set."""
    task = submit(batcher, clock, payload)
    await rec.wait_entered()
    return task


async def answered(*aws) -> list:
    """Every awaitable's result. On the fake clock nothing waits for time to pass, so a batcher that did
    would hang: the bound is how long that failure takes to show, not how long answering takes."""
    return await asyncio.wait_for(asyncio.gather(*aws), FAIL_S)
