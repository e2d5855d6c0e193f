"""Continuous batching (docs/architecture.md, Batching: "zero-wait"): nothing waits for nothing, the max delay
is spent only on imminent arrivals, and the load readings that admission at the door relies on (busy, drain
rate).

Each test here fails under the old fixed-window policy (every window waited max_delay_s for company).
"""

from __future__ import annotations

import asyncio
import time

from tests.unit.inference.fakes import Recorder, soon, start_blocked, wait_until

# ---- zero wait -----------------------------------------------------------------------------------


async def test_lone_item_on_idle_batcher_runs_at_once(make):
    rec = Recorder()
    batcher = await make(rec, max_batch_size=8, max_delay_s=0.5)
    for payload in ("first", "second"):  # the second has a history of arrivals: still alone, still at once
        result, info = await batcher.submit(payload, deadline=soon())
        assert result == f"out-{payload}" and info.size == 1
        assert info.queue_s < 0.1, info.queue_s  # the old window made it wait the 500 ms; room for a busy core


async def test_arrivals_during_compute_form_the_next_batch_at_once(make):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=8, max_delay_s=1.0)
    blocker = await start_blocked(batcher, rec)
    tasks = [asyncio.create_task(batcher.submit(i, deadline=soon())) for i in range(5)]
    await wait_until(lambda: batcher.depth == 5)
    opened = time.monotonic()
    rec.gate.set()
    outs = await asyncio.gather(*tasks)
    assert time.monotonic() - opened < 0.5  # no window wait after the batch (the old one: ~1 s)
    assert rec.calls == [["blocker"], [0, 1, 2, 3, 4]]
    assert [info.size for _, info in outs] == [5] * 5
    await blocker


async def test_batches_grow_under_continuous_load(make):
    rec = Recorder(sleep_s=0.002)
    batcher = await make(rec, max_batch_size=32, max_delay_s=0.005)
    stop_at, sizes = time.monotonic() + 0.3, []

    async def caller() -> None:
        while time.monotonic() < stop_at:
            sizes.append((await batcher.submit("x", deadline=soon()))[1].size)

    await asyncio.gather(*(caller() for _ in range(32)))
    assert len(sizes) / len(rec.calls) > 1  # items per batch
    assert sum(sizes) / len(sizes) > 1  # batch size seen by the average item


# ---- the imminent-arrival rule -------------------------------------------------------------------


async def test_forming_batch_waits_for_imminent_arrivals_up_to_max_delay(make):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=64, max_delay_s=0.3)
    blocker = await start_blocked(batcher, rec)
    gap, count = 0.04, 12

    async def stream() -> list:
        tasks = []
        for i in range(count):
            tasks.append(asyncio.create_task(batcher.submit(i, deadline=soon())))
            await asyncio.sleep(gap)
        return await asyncio.gather(*tasks)

    streaming = asyncio.create_task(stream())
    await wait_until(lambda: batcher.depth == 2)  # a batch is forming while the blocker computes
    rec.gate.set()
    outs = await streaming
    await blocker
    forming = rec.calls[1]
    assert 2 < len(forming) < count  # it waited for arrivals, but not for all of them
    assert max(outs[i][1].queue_s for i in forming) < 0.3 + 0.2  # the max delay caps the wait
    assert all(len(call) == 1 for call in rec.calls[2:])  # afterwards: each arrival finds it idle


async def test_forming_batch_stops_waiting_two_gaps_after_the_stream_stops(make):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=64, max_delay_s=2.0)
    blocker = await start_blocked(batcher, rec)
    first = asyncio.create_task(batcher.submit("a", deadline=soon()))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(batcher.submit("b", deadline=soon()))
    await wait_until(lambda: batcher.depth == 2)
    rec.gate.set()  # nothing else arrives
    (_, info_a), (_, info_b) = await asyncio.gather(first, second)
    await blocker
    assert rec.calls[1] == ["a", "b"]
    assert info_b.queue_s >= 0.09  # held two ~50 ms gaps for an arrival that looked imminent
    assert info_a.queue_s < 1.0  # and then gave up, long before the 2 s max delay


async def test_stopping_cuts_a_forming_batch_at_once(make):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=64, max_delay_s=5.0)
    blocker = await start_blocked(batcher, rec)
    first = asyncio.create_task(batcher.submit("a", deadline=soon(10)))
    await asyncio.sleep(0.2)  # a 200 ms gap: the loop would wait up to 400 ms for the next
    second = asyncio.create_task(batcher.submit("b", deadline=soon(10)))
    await wait_until(lambda: batcher.depth == 2)
    stopping = asyncio.create_task(batcher.stop())
    rec.gate.set()
    (_, info_a), (_, info_b) = await asyncio.gather(first, second)
    await asyncio.wait_for(stopping, 5)
    await blocker
    assert rec.calls[1] == ["a", "b"] and info_b.queue_s < 0.2  # stopping: nobody is coming
