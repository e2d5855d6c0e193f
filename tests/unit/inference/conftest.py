"""Fixtures of the batcher tests: a fresh Metrics registry, a fake clock and a factory of started batchers."""

from __future__ import annotations

import asyncio

import pytest

from service.engine.batcher import Batcher, BatchPolicy
from service.metrics import Metrics
from tests.fake_clock import FakeClock
from tests.unit.inference.fakes import COMPONENT, FAIL_S, MODEL, Recorder


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make(metrics, clock):
    """make(run_batch, **policy) → a started Batcher on the fake clock (unless given another); every one made
    is drained (gate opened) at teardown."""
    made: list[Batcher] = []

    async def _make(
        run_batch, *, max_batch_size=4, max_delay_s=0.02, max_queue=64, budget=None, executor=None, on=clock
    ) -> Batcher:
        policy = BatchPolicy(max_batch_size, max_delay_s, max_queue, budget)
        batcher = Batcher(COMPONENT, MODEL, run_batch, policy, metrics, executor, clock=on)
        await batcher.start()
        made.append(batcher)
        return batcher

    yield _make
    for batcher in made:
        if isinstance(batcher._run_batch, Recorder):
            batcher._run_batch.gate.set()
        await asyncio.wait_for(batcher.stop(), FAIL_S)
