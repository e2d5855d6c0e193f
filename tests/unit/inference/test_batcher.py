"""The dynamic batcher (docs/architecture.md, Batching; docs/bad-input.md rows 12–14) with fake run_batch
functions that record their calls.

Batch formation, admission, dropping, padding budget and lifecycle; the continuous-batching policy
(when to wait) and the load readings (busy, drain rate) are in test_continuous_batching.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.engine.batch_window import padding_ratio
from service.engine.batcher import Batcher, BatchPolicy
from service.errors import DeadlineExceeded, NotReady, QueueFull
from tests.unit.inference.fakes import (
    COMPONENT,
    LABELS,
    MODEL,
    Recorder,
    depth_gauge,
    rejected,
    sample,
    soon,
    start_blocked,
    wait_until,
)

# ---- batch formation ---------------------------------------------------------------------------


async def test_concurrent_submits_form_batches_and_map_results(make, metrics):
    rec = Recorder(sleep_s=0.02)  # slow enough that the queue refills while a batch computes
    batcher = await make(rec, max_batch_size=8, max_delay_s=0.05)
    outs = await asyncio.gather(*(batcher.submit(i, deadline=soon()) for i in range(40)))

    assert [result for result, _ in outs] == [f"out-{i}" for i in range(40)]
    sizes = [len(call) for call in rec.calls]
    assert sum(sizes) == 40 and max(sizes) <= 8 and max(sizes) > 1
    for i, (_, info) in enumerate(outs):
        call = next(c for c in rec.calls if i in c)
        assert info.size == len(call) and info.queue_s >= 0 and info.infer_s >= 0.015
    assert sample(metrics, "fusionserve_batch_size_count") == len(rec.calls)
    assert sample(metrics, "fusionserve_batch_size_sum") == 40
    assert sample(metrics, "fusionserve_batch_size_bucket", {**LABELS, "le": "8.0"}) == len(rec.calls)
    assert sample(metrics, "fusionserve_batch_size_bucket", {**LABELS, "le": "1.0"}) < len(rec.calls)
    for stage in ("queue", "infer"):
        labels = {"model": MODEL, "stage": stage, "modality": COMPONENT}
        assert sample(metrics, "fusionserve_stage_duration_seconds_count", labels) == 40
    assert sample(metrics, "fusionserve_batch_padding_ratio_count") is None  # fixed-size inputs
    assert batcher.depth == 0 and depth_gauge(metrics) == 0


async def test_full_batch_does_not_wait_for_delay(make):
    rec = Recorder()
    batcher = await make(rec, max_batch_size=4, max_delay_s=5.0)
    t0 = time.monotonic()
    outs = await asyncio.gather(*(batcher.submit(i, deadline=soon(10)) for i in range(4)))
    assert time.monotonic() - t0 < 2.0
    assert rec.calls == [[0, 1, 2, 3]] and all(info.size == 4 for _, info in outs)


async def test_a_finished_batch_answers_its_callers_a_few_per_loop_iteration(make):
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
        await batcher.submit(i, deadline=soon(10))
        return ticks[0]

    tick_task = asyncio.ensure_future(ticker())
    answered_at = await asyncio.gather(*(caller(i) for i in range(12)))
    stop.set()
    await tick_task
    assert rec.calls == [list(range(12))]  # one batch
    assert len(set(answered_at)) == 12 // DELIVER_CHUNK and sorted(answered_at) == answered_at  # in order


async def test_max_batch_size_respected_and_batches_grow_under_load(make):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=4, max_delay_s=0.01)
    blocker = await start_blocked(batcher, rec)
    tasks = [asyncio.create_task(batcher.submit(i, deadline=soon())) for i in range(10)]
    await wait_until(lambda: batcher.depth == 10)
    rec.gate.set()
    outs = await asyncio.gather(blocker, *tasks)
    assert [len(c) for c in rec.calls] == [1, 4, 4, 2]
    assert rec.computed() == ["blocker", *range(10)]  # FIFO across batches
    assert [info.size for _, info in outs] == [1, 4, 4, 4, 4, 4, 4, 4, 4, 2, 2]


# ---- admission and dropping ----------------------------------------------------------------------


async def test_queue_full_rejects_at_once_with_retry_after(make, metrics):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=2, max_queue=3)
    blocker = await start_blocked(batcher, rec)  # computing: not counted against max_queue
    queued = [asyncio.create_task(batcher.submit(i, deadline=soon())) for i in range(3)]
    await wait_until(lambda: batcher.depth == 3)

    t0 = time.perf_counter()
    with pytest.raises(QueueFull) as err:
        await batcher.submit("extra", deadline=soon())
    assert time.perf_counter() - t0 < 0.05  # refused at once (~0 ms); the margin is for a loaded CI box
    assert err.value.status == 429 and err.value.headers == {"Retry-After": "1"}
    assert "max_queue=3" in err.value.message
    with pytest.raises(QueueFull):  # raised on the coroutine's first step: it never awaits
        batcher.submit("extra2", deadline=soon()).send(None)
    assert rejected(metrics, "queue_full") == 2 and depth_gauge(metrics) == 3

    rec.gate.set()
    await asyncio.gather(blocker, *queued)
    assert "extra" not in rec.computed() and "extra2" not in rec.computed()
    assert depth_gauge(metrics) == 0


async def test_deadline_while_queued_never_reaches_run_batch(make, metrics):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=4)
    blocker = await start_blocked(batcher, rec)
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded) as err:
        await batcher.submit("late", deadline=time.monotonic() + 0.2)
    assert 0.18 <= time.monotonic() - t0 < 1.0
    assert err.value.status == 504
    assert batcher.depth == 0 and depth_gauge(metrics) == 0
    assert rejected(metrics, "deadline") == 1

    rec.gate.set()
    await blocker
    assert (await batcher.submit("next", deadline=soon()))[0] == "out-next"  # the loop moved on
    assert "late" not in rec.computed()


async def test_deadline_already_passed_is_rejected_without_queueing(make, metrics):
    batcher = await make(Recorder())
    with pytest.raises(DeadlineExceeded):
        await batcher.submit("x", deadline=time.monotonic() - 0.001)
    assert rejected(metrics, "deadline") == 1 and batcher.depth == 0


async def test_cancelled_submit_is_dropped_before_compute(make, metrics):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=4)
    blocker = await start_blocked(batcher, rec)
    gone = asyncio.create_task(batcher.submit("gone", deadline=soon()))
    await wait_until(lambda: batcher.depth == 1)
    assert depth_gauge(metrics) == 1
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert batcher.depth == 0 and depth_gauge(metrics) == 0  # no leak: freed at once

    rec.gate.set()
    await blocker
    assert (await batcher.submit("after", deadline=soon()))[0] == "out-after"
    assert "gone" not in rec.computed()


# ---- padding budget ------------------------------------------------------------------------------


async def test_budget_sorts_window_and_caps_padded_cells(make, metrics):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=9, max_delay_s=0.01, budget=40)
    blocker = await start_blocked(batcher, rec, payload=("blocker", 1))
    lengths = [10, 3, 7, 20, 1, 5, 12, 2, 50]  # 50 > budget: must run alone
    tasks = [asyncio.create_task(batcher.submit((f"p{n}", n), length=n, deadline=soon())) for n in lengths]
    await wait_until(lambda: batcher.depth == len(lengths))
    rec.gate.set()
    outs = await asyncio.gather(*tasks)
    await blocker

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


# ---- failures and lifecycle ----------------------------------------------------------------------


async def test_run_batch_error_hits_only_its_batch_and_loop_survives(make):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=2, max_delay_s=0.01)
    blocker = await start_blocked(batcher, rec)
    doomed = [asyncio.create_task(batcher.submit(p, deadline=soon())) for p in ("boom", "a")]
    await wait_until(lambda: batcher.depth == 2)
    rec.gate.set()
    assert (await blocker)[0] == "out-blocker"
    for task in doomed:
        with pytest.raises(ValueError, match="boom in batch"):
            await task
    assert (await batcher.submit("ok", deadline=soon()))[0] == "out-ok"


async def test_wrong_result_count_is_a_runtime_error(make):
    batcher = await make(Recorder())
    with pytest.raises(RuntimeError, match="returned 0 results for 1 inputs"):
        await batcher.submit("short", deadline=soon())
    assert (await batcher.submit("fine", deadline=soon()))[0] == "out-fine"


async def test_stop_lets_queued_items_finish_then_refuses(make, metrics):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=2, max_delay_s=5.0)  # stop must not wait the delay out
    blockers = [asyncio.create_task(batcher.submit(p, deadline=soon(10))) for p in ("b1", "b2")]
    await rec.wait_entered()  # a full batch starts at once
    queued = [asyncio.create_task(batcher.submit(i, deadline=soon(10))) for i in range(3)]
    await wait_until(lambda: batcher.depth == 3)
    stopping = asyncio.create_task(batcher.stop())
    await asyncio.sleep(0)  # one loop iteration: stop() refuses new items before its first await
    with pytest.raises(NotReady):
        await batcher.submit("late", deadline=soon())
    rec.gate.set()
    t0 = time.monotonic()
    await asyncio.wait_for(stopping, 3)
    assert time.monotonic() - t0 < 2.0
    results = [result for result, _ in await asyncio.gather(*blockers, *queued)]
    assert results == ["out-b1", "out-b2", "out-0", "out-1", "out-2"]
    assert rec.calls == [["b1", "b2"], [0, 1], [2]]  # the last one flushed without its 5 s delay
    with pytest.raises(NotReady):
        await batcher.submit("after", deadline=soon())
    assert depth_gauge(metrics) == 0


async def test_submit_before_start_is_not_ready(metrics):
    batcher = Batcher(COMPONENT, MODEL, Recorder(), BatchPolicy(4, 0.01, 8), metrics)
    with pytest.raises(NotReady):
        await batcher.submit("x", deadline=soon())


async def test_cancelled_stop_answers_pending_items(make):
    rec = Recorder(gated=True)
    batcher = await make(rec, max_batch_size=2)
    blocker = await start_blocked(batcher, rec)
    queued = asyncio.create_task(batcher.submit("q", deadline=soon()))
    await wait_until(lambda: batcher.depth == 1)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(batcher.stop(), 0.05)  # e.g. a drain timeout: the loop is cancelled
    for task in (blocker, queued):
        with pytest.raises(NotReady):
            await task
    rec.gate.set()
    assert "q" not in rec.computed()


async def test_runs_in_named_worker_thread_or_given_executor(make):
    rec = Recorder()
    batcher = await make(rec)
    await batcher.submit("x", deadline=soon())
    assert COMPONENT in rec.threads[0] and rec.threads[0] != threading.current_thread().name
    with ThreadPoolExecutor(1, thread_name_prefix="custom") as pool:
        rec2 = Recorder()
        batcher2 = await make(rec2, executor=pool)
        await batcher2.submit("y", deadline=soon())
        await batcher2.stop()
        assert rec2.threads[0].startswith("custom")
