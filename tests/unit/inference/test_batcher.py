"""The dynamic batcher (docs/architecture.md, Batching; docs/bad-input.md rows 12–14) with fake run_batch
functions that record their calls, on a fake clock (tests/fake_clock.py).

Batch formation, admission, dropping and the padding budget; failures and lifecycle are in
test_batcher_lifecycle.py; the continuous-batching policy (when to wait) in test_continuous_batching.py.
"""

from __future__ import annotations

import asyncio

import pytest

from service.engine.batch_window import padding_ratio
from service.errors import DeadlineExceeded, QueueFull
from tests.unit.inference.fakes import (
    COMPONENT,
    LABELS,
    MODEL,
    Recorder,
    answered,
    depth_gauge,
    rejected,
    sample,
    start_blocked,
    submit,
)
from tests.waiting import wait_until_async

COMPUTE_S = 0.03125  # what one fake batch takes on the fake clock (a binary fraction: sums stay exact)

# ---- batch formation ---------------------------------------------------------------------------


async def test_concurrent_submits_form_batches_and_map_results(make, metrics, clock):
    rec = Recorder(clock=clock, compute_s=COMPUTE_S)
    batcher = await make(rec, max_batch_size=8, max_delay_s=0.05)
    outs = await answered(*(submit(batcher, clock, i) for i in range(40)))

    assert [result for result, _ in outs] == [f"out-{i}" for i in range(40)]
    # all 40 queue before the loop looks: full batches, one after the other, in arrival order
    assert rec.calls == [list(range(k, k + 8)) for k in range(0, 40, 8)]
    for i, (_, info) in enumerate(outs):  # batch k waited for the k batches before it
        assert (info.size, info.queue_s, info.infer_s) == (8, (i // 8) * COMPUTE_S, COMPUTE_S)
    assert sample(metrics, "fusionserve_batch_size_count") == 5
    assert sample(metrics, "fusionserve_batch_size_sum") == 40
    assert sample(metrics, "fusionserve_batch_size_bucket", {**LABELS, "le": "8.0"}) == 5
    assert sample(metrics, "fusionserve_batch_size_bucket", {**LABELS, "le": "1.0"}) == 0
    expected_sums = {"queue": 8 * COMPUTE_S * (0 + 1 + 2 + 3 + 4), "infer": 40 * COMPUTE_S}
    for stage, expected in expected_sums.items():
        labels = {"model": MODEL, "stage": stage, "modality": COMPONENT}
        assert sample(metrics, "fusionserve_stage_duration_seconds_count", labels) == 40
        assert sample(metrics, "fusionserve_stage_duration_seconds_sum", labels) == expected
    assert sample(metrics, "fusionserve_batch_padding_ratio_count") is None  # fixed-size inputs
    assert batcher.depth == 0 and depth_gauge(metrics) == 0


async def test_full_batch_does_not_wait_for_delay(make, clock):
    rec = Recorder()
    batcher = await make(rec, max_batch_size=4, max_delay_s=5.0)
    start = clock.now()
    outs = await answered(*(submit(batcher, clock, i) for i in range(4)))  # the clock never moves
    assert rec.calls == [[0, 1, 2, 3]] and all(info.size == 4 for _, info in outs)
    assert all(info.queue_s == 0.0 for _, info in outs) and clock.now() == start


async def test_a_finished_batch_answers_its_callers_a_few_per_loop_iteration(make, clock):
    """Between chunks of answers the event loop runs other work (a refusal, a new request's headers), so a
    batch of 12 ends over several iterations and nothing else waits behind all 12 responses."""
    from service.engine.batcher import DELIVER_CHUNK

    rec, ticks, stop = Recorder(), [0], asyncio.Event()
    batcher = await make(rec, max_batch_size=12, max_delay_s=5.0)

    async def ticker() -> None:  # one tick per loop iteration
        while not stop.is_set():
            ticks[0] += 1
            await asyncio.sleep(0)

    async def caller(i: int) -> int:
        await batcher.submit(i, deadline=clock.after(10))
        return ticks[0]

    tick_task = asyncio.ensure_future(ticker())
    answered_at = await answered(*(caller(i) for i in range(12)))
    stop.set()
    await tick_task
    assert rec.calls == [list(range(12))]  # one batch
    assert len(set(answered_at)) == 12 // DELIVER_CHUNK and sorted(answered_at) == answered_at  # in order


async def test_max_batch_size_respected_and_batches_grow_under_load(make, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=4, max_delay_s=0.01)
    blocker = await start_blocked(batcher, rec, clock)
    tasks = [submit(batcher, clock, i) for i in range(10)]
    await wait_until_async(lambda: batcher.depth == 10, what="10 items to queue")
    rec.gate.set()
    outs = await answered(blocker, *tasks)
    assert [len(c) for c in rec.calls] == [1, 4, 4, 2]
    assert rec.computed() == ["blocker", *range(10)]  # FIFO across batches
    assert [info.size for _, info in outs] == [1, 4, 4, 4, 4, 4, 4, 4, 4, 2, 2]


# ---- admission and dropping ----------------------------------------------------------------------


async def test_queue_full_rejects_at_once_with_retry_after(make, metrics, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=2, max_queue=3)
    blocker = await start_blocked(batcher, rec, clock)  # computing: not counted against max_queue
    queued = [submit(batcher, clock, i) for i in range(3)]
    await wait_until_async(lambda: batcher.depth == 3, what="3 items to queue")

    with pytest.raises(QueueFull) as err:
        await batcher.submit("extra", deadline=clock.after(5))
    assert err.value.status == 429 and err.value.headers == {"Retry-After": "1"}
    assert "max_queue=3" in err.value.message
    with pytest.raises(QueueFull):  # at once: raised on the coroutine's first step, it never awaits
        batcher.submit("extra2", deadline=clock.after(5)).send(None)
    assert rejected(metrics, "queue_full") == 2 and depth_gauge(metrics) == 3

    rec.gate.set()
    await answered(blocker, *queued)
    assert "extra" not in rec.computed() and "extra2" not in rec.computed()
    assert depth_gauge(metrics) == 0


async def test_deadline_while_queued_never_reaches_run_batch(make, metrics, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=4)
    blocker = await start_blocked(batcher, rec, clock)
    deadline = clock.after(0.25)
    late = asyncio.create_task(batcher.submit("late", deadline=deadline))
    await wait_until_async(lambda: clock.wakes()[0] == deadline, what="the late item to wait for its deadline")
    clock.advance_to(deadline - 2**-20)  # just before: the item still waits, queued
    assert clock.wakes()[0] == deadline and not late.done() and batcher.depth == 1
    clock.advance_to(deadline)
    with pytest.raises(DeadlineExceeded) as err:
        await answered(late)
    assert err.value.status == 504
    assert "after 0.250s waiting in the text queue" in err.value.message  # the fake seconds it waited
    assert batcher.depth == 0 and depth_gauge(metrics) == 0
    assert rejected(metrics, "deadline") == 1

    rec.gate.set()
    await answered(blocker)
    assert (await answered(submit(batcher, clock, "next")))[0][0] == "out-next"  # the loop moved on
    assert "late" not in rec.computed()


async def test_deadline_already_passed_is_rejected_without_queueing(make, metrics, clock):
    batcher = await make(Recorder())
    for deadline in (clock.now() - 0.001, clock.now()):  # a deadline that is now has passed too
        with pytest.raises(DeadlineExceeded, match="already passed"):
            batcher.submit("x", deadline=deadline).send(None)  # refused before any await
    assert rejected(metrics, "deadline") == 2 and batcher.depth == 0


async def test_cancelled_submit_is_dropped_before_compute(make, metrics, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=4)
    blocker = await start_blocked(batcher, rec, clock)
    gone = submit(batcher, clock, "gone")
    await wait_until_async(lambda: batcher.depth == 1, what="the item to queue")
    assert depth_gauge(metrics) == 1
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert batcher.depth == 0 and depth_gauge(metrics) == 0  # no leak: freed at once

    rec.gate.set()
    await answered(blocker)
    assert (await answered(submit(batcher, clock, "after")))[0][0] == "out-after"
    assert "gone" not in rec.computed()


# ---- padding budget ------------------------------------------------------------------------------


async def test_budget_sorts_window_and_caps_padded_cells(make, metrics, clock):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=9, max_delay_s=0.01, budget=40)
    blocker = await start_blocked(batcher, rec, clock, payload=("blocker", 1))
    lengths = [10, 3, 7, 20, 1, 5, 12, 2, 50]  # 50 > budget: must run alone
    tasks = [submit(batcher, clock, (f"p{n}", n), length=n) for n in lengths]
    await wait_until_async(lambda: batcher.depth == len(lengths), what="the window to queue")
    rec.gate.set()
    outs = await answered(*tasks)
    await answered(blocker)

    window = [[n for _, n in call] for call in rec.calls[1:]]
    assert window == [[1, 2, 3, 5, 7], [10, 12], [20], [50]]
    for batch in window:
        assert batch == sorted(batch)
        assert len(batch) == 1 or len(batch) * max(batch) <= 40
    for (result, info), n in zip(outs, lengths, strict=True):
        assert result == f"out-('p{n}', {n})"
        assert info.size == next(len(b) for b in window if n in b)
    assert sample(metrics, "fusionserve_batch_padding_ratio_count") == len(rec.calls)
    expected = sum(padding_ratio(b) for b in window)  # the blocker's batch of one pads nothing
    assert sample(metrics, "fusionserve_batch_padding_ratio_sum") == pytest.approx(expected)
