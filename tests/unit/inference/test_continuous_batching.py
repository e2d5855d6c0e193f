"""Continuous batching (docs/architecture.md, Batching: "zero-wait"): nothing waits for nothing, the max delay
is spent only on imminent arrivals, and only up to the oldest item's max delay.

Arrivals and compute happen on a fake clock (tests/fake_clock.py), so each test asserts the exact reading at
which a batch is cut and the exact queue time it reports. Every one would fail under a fixed window (each
window waiting max_delay_s for company), the policy this one replaced.
"""

from __future__ import annotations

from tests.unit.inference.fakes import Recorder, answered, arrive, start_blocked, submit
from tests.waiting import wait_until_async

GAP = 1 / 32  # seconds between arrivals: binary fractions keep every reading and gap exact

# ---- zero wait -----------------------------------------------------------------------------------


async def test_lone_item_on_idle_batcher_runs_at_once(make, clock):
    rec = Recorder()
    batcher = await make(rec, max_batch_size=8, max_delay_s=0.5)
    for payload in ("first", "second"):  # the second has a history of arrivals: still alone, still at once
        [(result, info)] = await answered(submit(batcher, clock, payload))
        assert result == f"out-{payload}" and info.size == 1
        assert info.queue_s == 0.0  # a fixed window would have made it wait the 500 ms
        clock.advance(GAP)


async def test_arrivals_during_compute_form_the_next_batch_at_once(make, clock):
    rec = Recorder(gated=True, clock=clock, compute_s=0.125)
    batcher = await make(rec, max_batch_size=8, max_delay_s=1.0)
    blocker = await start_blocked(batcher, rec, clock)
    tasks = [submit(batcher, clock, i) for i in range(5)]
    await wait_until_async(lambda: batcher.depth == 5, what="five items to queue behind the blocker")
    rec.gate.set()
    outs = await answered(*tasks)
    assert rec.calls == [["blocker"], [0, 1, 2, 3, 4]]
    assert [info.size for _, info in outs] == [5] * 5
    assert all(info.queue_s == 0.125 for _, info in outs)  # the blocker's compute, no window after it
    await answered(blocker)


async def test_batches_grow_under_continuous_load(make, clock):
    rec = Recorder(clock=clock, compute_s=2**-9)  # ~2 ms a batch
    batcher = await make(rec, max_batch_size=32, max_delay_s=0.005)
    stop_at, sizes = clock.after(0.3), []

    async def caller() -> None:
        while clock.now() < stop_at:
            sizes.append((await batcher.submit("x", deadline=clock.after(5)))[1].size)

    await answered(*(caller() for _ in range(32)))
    assert len(sizes) / len(rec.calls) > 1  # items per batch
    assert sum(sizes) / len(sizes) > 1  # batch size seen by the average item


# ---- the imminent-arrival rule -------------------------------------------------------------------


async def next_wake_is(clock, reading: float, what: str) -> None:
    """The owner loop sleeps until `reading` (the callers' own deadlines are all later)."""
    await wait_until_async(lambda: clock.wakes()[0] == reading, what=what)


async def test_forming_batch_waits_for_imminent_arrivals_while_they_can_join(make, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=64, max_delay_s=8 * GAP)
    blocker = await start_blocked(batcher, rec, clock)
    t0, tasks = clock.now(), [await arrive(batcher, clock, 0)]
    clock.advance(GAP)
    tasks.append(await arrive(batcher, clock, 1))
    await wait_until_async(lambda: batcher.depth == 2, what="a batch forming while the blocker computes")
    rec.gate.set()
    await next_wake_is(clock, t0 + 3 * GAP, "the loop to wait two gaps past the newest arrival")
    for i in range(2, 8):
        clock.advance(GAP)
        tasks.append(await arrive(batcher, clock, i))
        if i < 7:  # each arrival re-decides: two gaps past it
            await next_wake_is(clock, t0 + (i + 2) * GAP, f"the loop to re-decide at arrival {i}")
    # arrival 7 came at 7 gaps: the next one, due at 8, would find the oldest's 8-gap max delay run out
    outs = await answered(*tasks)
    await answered(blocker)
    assert rec.calls[1] == list(range(8)) and clock.now() == t0 + 7 * GAP
    assert [info.queue_s for _, info in outs] == [(7 - i) * GAP for i in range(8)]
    for i in range(8, 11):  # afterwards: each arrival finds the batcher idle
        clock.advance(GAP)
        [(_, info)] = await answered(submit(batcher, clock, i))
        assert info.size == 1 and info.queue_s == 0.0


async def test_a_forming_batch_is_cut_when_the_oldest_max_delay_runs_out(make, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=64, max_delay_s=10 * GAP)
    blocker = await start_blocked(batcher, rec, clock)
    t0, first = clock.now(), await arrive(batcher, clock, "a")
    clock.advance(4 * GAP)
    second = await arrive(batcher, clock, "b")
    await wait_until_async(lambda: batcher.depth == 2, what="a batch forming while the blocker computes")
    rec.gate.set()
    # the next arrival is due at 8 gaps, in time to join; two gaps past the newest (12) is past the max delay
    await next_wake_is(clock, t0 + 10 * GAP, "the loop to wait until the oldest's max delay")
    clock.advance_to(t0 + 10 * GAP - 2**-20)  # just before: still forming
    assert clock.wakes()[0] == t0 + 10 * GAP and len(rec.calls) == 1
    clock.advance_to(t0 + 10 * GAP)
    (_, info_a), (_, info_b) = await answered(first, second)
    await answered(blocker)
    assert rec.calls[1] == ["a", "b"]
    assert (info_a.queue_s, info_b.queue_s) == (10 * GAP, 6 * GAP)  # the oldest waited exactly the max delay


async def test_forming_batch_stops_waiting_two_gaps_after_the_stream_stops(make, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=64, max_delay_s=2.0)
    blocker = await start_blocked(batcher, rec, clock)
    t0, first = clock.now(), await arrive(batcher, clock, "a")
    clock.advance(2 * GAP)
    second = await arrive(batcher, clock, "b")
    await wait_until_async(lambda: batcher.depth == 2, what="a batch forming while the blocker computes")
    rec.gate.set()  # nothing else arrives
    await next_wake_is(clock, t0 + 6 * GAP, "the loop to wait two gaps past the newest arrival")
    clock.advance_to(t0 + 6 * GAP)
    (_, info_a), (_, info_b) = await answered(first, second)
    await answered(blocker)
    assert rec.calls[1] == ["a", "b"]
    assert info_b.queue_s == 4 * GAP  # held two gaps for an arrival that looked imminent
    assert info_a.queue_s == 6 * GAP  # and then gave up, long before the 2 s max delay


async def test_stopping_cuts_a_forming_batch_at_once(make, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=64, max_delay_s=5.0)
    blocker = await start_blocked(batcher, rec, clock)
    first = await arrive(batcher, clock, "a")
    clock.advance(0.25)  # a 250 ms gap: the loop would wait up to 500 ms for the next
    second = await arrive(batcher, clock, "b")
    await wait_until_async(lambda: batcher.depth == 2, what="a batch forming while the blocker computes")
    stopping = batcher.stop()
    rec.gate.set()
    (_, info_a), (_, info_b), _ = await answered(first, second, stopping)
    await answered(blocker)
    assert rec.calls[1] == ["a", "b"]
    assert (info_a.queue_s, info_b.queue_s) == (0.25, 0.0)  # stopping: nobody is coming, no wait
