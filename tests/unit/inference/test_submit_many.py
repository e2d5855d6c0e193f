"""Batcher.submit_many (a video's frames, its segments' sound and pooling, its fusion rows): each payload an item
of its own in the batches, answered in order; admitted all or none; at the deadline, on a failure or when the
caller goes away, whatever has not run is dropped. On the fake clock (tests/fake_clock.py)."""

from __future__ import annotations

import asyncio

import pytest

from service.errors import DeadlineExceeded, QueueFull
from tests.unit.inference.fakes import LONG_S, Recorder, answered, depth_gauge, rejected, start_blocked, submit
from tests.waiting import wait_until_async


def submit_many(batcher, clock, payloads, deadline_s: float = LONG_S) -> asyncio.Task:
    lengths = [1] * len(payloads)
    return asyncio.create_task(batcher.submit_many(payloads, lengths, deadline=clock.after(deadline_s)))


async def test_each_payload_is_an_item_of_the_batches_answered_in_order(make, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=4)
    blocker = await start_blocked(batcher, rec, clock)
    many = submit_many(batcher, clock, ["f0", "f1", "f2", "f3", "f4"])
    single = submit(batcher, clock, "image")
    await wait_until_async(lambda: batcher.depth == 6, what="the frames and the image to queue")
    rec.gate.set()
    (frames, (image, _)), _ = await answered(asyncio.gather(many, single), blocker)
    assert [out for out, _ in frames] == [f"out-f{i}" for i in range(5)] and image == "out-image"
    assert rec.calls[1:] == [["f0", "f1", "f2", "f3"], ["f4", "image"]]  # batched with the other caller's item
    assert [info.size for _, info in frames] == [4, 4, 4, 4, 2]
    assert await batcher.submit_many([], [], deadline=clock.after(1)) == []


async def test_a_refusal_admits_none_of_them(make, metrics, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=2, max_queue=3)
    blocker = await start_blocked(batcher, rec, clock)
    with pytest.raises(QueueFull):
        await submit_many(batcher, clock, ["a", "b", "c", "d"])
    assert batcher.depth == 0 and depth_gauge(metrics) == 0 and rejected(metrics, "queue_full") == 1
    rec.gate.set()
    await answered(blocker)
    assert rec.computed() == ["blocker"]


async def test_at_the_deadline_the_waiting_ones_are_dropped(make, metrics, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=4)
    blocker = await start_blocked(batcher, rec, clock)
    late = submit_many(batcher, clock, ["x", "y"], deadline_s=0.5)
    await wait_until_async(lambda: batcher.depth == 2, what="the two items to queue")
    await wait_until_async(lambda: clock.wakes() != [], what="the call to wait for its deadline")
    clock.advance(0.5)
    with pytest.raises(DeadlineExceeded, match="2 of 2 items waiting in the text queue"):
        await answered(late)
    assert batcher.depth == 0 and rejected(metrics, "deadline") == 1
    rec.gate.set()
    await answered(blocker)
    assert "x" not in rec.computed() and "y" not in rec.computed()


async def test_a_caller_gone_or_a_failed_batch_drops_the_rest(make, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=1)
    blocker = await start_blocked(batcher, rec, clock)
    gone = submit_many(batcher, clock, ["g0", "g1"])
    await wait_until_async(lambda: batcher.depth == 2, what="the items to queue")
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert batcher.depth == 0
    failing = submit_many(batcher, clock, ["boom", "after-boom"])  # batches of one: the first fails
    await wait_until_async(lambda: batcher.depth == 2, what="the items to queue")
    rec.gate.set()
    with pytest.raises(ValueError, match="boom in batch"):  # the batch's error, whatever became of the rest
        await answered(failing)
    await answered(blocker)
    assert batcher.depth == 0 and "g0" not in rec.computed() and "g1" not in rec.computed()
