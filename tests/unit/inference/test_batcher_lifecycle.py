"""The dynamic batcher's failures and lifecycle (a failing batch, stop, abort of a stop, its worker thread),
and the production clock it runs on by default. Fake run_batch functions on a fake clock (tests/fake_clock.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.engine.batcher import Batcher, BatchPolicy
from service.engine.clock import MonotonicClock
from service.errors import DeadlineExceeded, NotReady
from tests.unit.inference.fakes import (
    COMPONENT,
    MODEL,
    Recorder,
    answered,
    depth_gauge,
    start_blocked,
    submit,
)
from tests.waiting import wait_until_async


async def test_run_batch_error_hits_only_its_batch_and_loop_survives(make, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=2, max_delay_s=0.01)
    blocker = await start_blocked(batcher, rec, clock)
    doomed = [submit(batcher, clock, p) for p in ("boom", "a")]
    await wait_until_async(lambda: batcher.depth == 2, what="two items to queue")
    rec.gate.set()
    assert (await answered(blocker))[0][0] == "out-blocker"
    for task in doomed:
        with pytest.raises(ValueError, match="boom in batch"):
            await answered(task)
    assert (await answered(submit(batcher, clock, "ok")))[0][0] == "out-ok"


async def test_wrong_result_count_is_a_runtime_error(make, clock):
    batcher = await make(Recorder())
    with pytest.raises(RuntimeError, match="returned 0 results for 1 inputs"):
        await answered(submit(batcher, clock, "short"))
    assert (await answered(submit(batcher, clock, "fine")))[0][0] == "out-fine"


async def test_stop_lets_queued_items_finish_then_refuses(make, metrics, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=2, max_delay_s=5.0)  # stop must not wait the delay out
    start = clock.now()
    blockers = [submit(batcher, clock, p) for p in ("b1", "b2")]
    await rec.wait_entered()  # a full batch starts at once
    queued = [submit(batcher, clock, i) for i in range(3)]
    await wait_until_async(lambda: batcher.depth == 3, what="three items to queue")
    stopping = asyncio.create_task(batcher.stop())
    await asyncio.sleep(0)  # one loop iteration: stop() refuses new items before its first await
    with pytest.raises(NotReady):
        await batcher.submit("late", deadline=clock.after(5))
    rec.gate.set()
    await answered(stopping)  # with the clock standing still: no delay was waited out
    results = [result for result, _ in await answered(*blockers, *queued)]
    assert results == ["out-b1", "out-b2", "out-0", "out-1", "out-2"]
    assert rec.calls == [["b1", "b2"], [0, 1], [2]] and clock.now() == start
    with pytest.raises(NotReady):
        await batcher.submit("after", deadline=clock.after(5))
    assert depth_gauge(metrics) == 0


async def test_submit_before_start_is_not_ready(metrics):
    batcher = Batcher(COMPONENT, MODEL, Recorder(), BatchPolicy(4, 0.01, 8), metrics)
    with pytest.raises(NotReady):
        await batcher.submit("x", deadline=time.monotonic() + 5)


async def test_cancelled_stop_answers_pending_items(make, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=2)
    blocker = await start_blocked(batcher, rec, clock)
    queued = submit(batcher, clock, "q")
    await wait_until_async(lambda: batcher.depth == 1, what="the item to queue")
    stopping = asyncio.create_task(batcher.stop())  # waits for the blocker, held in compute
    await asyncio.sleep(0)  # one loop iteration: stop() is awaiting the loop
    stopping.cancel()  # e.g. a drain timeout: the loop is cancelled
    with pytest.raises(asyncio.CancelledError):
        await stopping
    for task in (blocker, queued):
        with pytest.raises(NotReady):
            await answered(task)
    rec.gate.set()
    assert "q" not in rec.computed()


async def test_runs_in_named_worker_thread_or_given_executor(make, clock):
    rec = Recorder()
    batcher = await make(rec)
    await answered(submit(batcher, clock, "x"))
    assert COMPONENT in rec.threads[0] and rec.threads[0] != threading.current_thread().name
    with ThreadPoolExecutor(1, thread_name_prefix="custom") as pool:
        rec2 = Recorder()
        batcher2 = await make(rec2, executor=pool)
        await answered(submit(batcher2, clock, "y"))
        await batcher2.stop()
        assert rec2.threads[0].startswith("custom")


async def test_by_default_deadlines_are_on_the_monotonic_clock(metrics):
    batcher = Batcher(COMPONENT, MODEL, Recorder(), BatchPolicy(4, 0.01, 8), metrics)
    await batcher.start()
    try:
        [(result, info)] = await answered(batcher.submit("x", deadline=time.monotonic() + 30))
        assert result == "out-x" and info.size == 1 and info.queue_s >= 0
        with pytest.raises(DeadlineExceeded, match="already passed"):
            await batcher.submit("y", deadline=time.monotonic() - 0.001)
    finally:
        await batcher.stop()


async def test_the_monotonic_clock_waits_for_a_future_or_a_reading():
    clock, loop = MonotonicClock(), asyncio.get_running_loop()
    done = loop.create_future()
    done.set_result(None)
    assert await clock.wait(done, None) and await clock.wait(done, clock.now() + 30)
    pending = loop.create_future()
    assert not await clock.wait(pending, clock.now())  # a reading already reached ends the wait
    assert not pending.cancelled()  # the future is the caller's: the wait never cancels it
