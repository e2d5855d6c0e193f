"""Continuous batching for one model component (docs/architecture.md, Batching), in the style of TEI's router queue.

One asyncio task owns the queue, and it never waits for nothing:
- idle (no batch computing): the first item runs at once, with whatever else is already queued;
- while a batch computes in the worker thread, arrivals queue; when it ends, everything waiting forms the
  next batch at once (cut by max_batch_size and the padding budget);
- the max delay is spent only where waiting pays: two or more items wait (a batch is forming), it is
  not full, and the next arrival is due (newest arrival + the mean gap between the waiting items) before
  the oldest item's max delay runs out. The loop then waits at most two gaps past the newest arrival and
  re-decides at each arrival (batch_window.company_wait_s), so a stream that stopped costs two gaps.
Callers only enqueue and wait on their own future, so a full queue (429) never awaits and a caller that
gives up (deadline, disconnect) takes its item out of the queue at once. Admission at the door is the data
plane's (service/frontend/dataplane.py), by requests in flight. BatchPolicy, BatchInfo and Computed live in batch_window
with the other pure parts and are re-exported here; the metric series in batch_metrics. Time is read and
waited on only through the batcher's clock (service/engine/clock.py), so a test can drive every rule above.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.engine.batch_metrics import BatcherMetrics
from service.engine.batch_window import BatchPolicy, Computed, company_wait_s, plan_batches
from service.engine.clock import Clock, MonotonicClock
from service.errors import DeadlineExceeded, FusionError, NotReady, QueueFull
from service.items import BatchInfo
from service.metrics import Metrics
from service.tracing import spans

log = logging.getLogger(__name__)
DELIVER_CHUNK = 4  # callers answered per event-loop iteration when a batch ends, by default (see _deliver)


@dataclass(eq=False)  # identity hash: items are keys of the queue
class _Item:
    payload: Any
    length: int
    deadline: float
    enqueued: float
    future: asyncio.Future
    started: bool = field(default=False)  # handed to run_batch; from then on the result is awaited
    trace: spans.Waiting | None = None  # the submitter's trace context (tracing on)


def _retrieved(future: asyncio.Future) -> None:
    """Mark a gathered future's exception as seen: one raised, or cancelled while dropped, is not news."""
    if not future.cancelled():
        future.exception()


class Batcher:
    def __init__(
        self,
        component: str,
        model: str,
        run_batch: Callable[[list[Any]], list[Any]],
        policy: BatchPolicy,
        metrics: Metrics,
        executor: concurrent.futures.Executor | None = None,
        clock: Clock | None = None,
        answer_chunk: int | None = DELIVER_CHUNK,
    ):
        self.component, self.model, self.policy = component, model, policy
        self._answer_chunk = answer_chunk  # None: a batch's callers all in one turn (an engine: one reply message)
        self._clock = clock or MonotonicClock()  # submit's deadlines are on this clock
        self._run_batch = run_batch
        self._executor, self._own_executor = executor, executor is None
        # OrderedDict, not deque: O(1) removal of the item a cancelled or expired caller abandons.
        self._queue: OrderedDict[_Item, None] = OrderedDict()
        self._held: list[_Item] = []  # taken from the queue by the loop, not answered yet
        self._waiter: asyncio.Future | None = None  # set while the loop sleeps
        self._task: asyncio.Task | None = None
        self._accepting = False
        self._stopped_with: FusionError | None = None  # what callers get once abort() stopped this
        self._metrics = BatcherMetrics(metrics, model, component, padded=policy.budget is not None)

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        if self._task is not None:
            return
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"batcher-{self.model}-{self.component}"
            )
        self._accepting = True
        self._task = asyncio.create_task(self._loop(), name=f"batcher-{self.model}-{self.component}")

    async def stop(self) -> None:
        """Refuse new items, let queued ones run, end the loop. Cancelling stop() cancels the loop,
        which answers whatever is still pending with NotReady."""
        self._accepting = False
        self._wake()
        try:
            if self._task is not None and not self._task.done():  # idempotent
                await self._task
        finally:
            if self._own_executor and self._executor is not None:
                # Idle after a clean stop; after a cancelled one the thread ends with its batch.
                self._executor.shutdown(wait=False)

    async def abort(self, error: FusionError) -> None:
        """Stop now, queued or not: whatever is pending is answered with `error`, new items get it too. A
        batch already in onnxruntime ends in its worker thread; its answer is dropped."""
        self._stopped_with, self._accepting = error, False
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task})
        self._fail_pending()
        if self._own_executor and self._executor is not None:
            self._executor.shutdown(wait=False)

    # ---- callers' side -------------------------------------------------------------------------

    async def submit(self, payload: Any, *, length: int = 1, deadline: float) -> tuple[Any, BatchInfo]:
        """The payload's result and how its batch ran; `deadline` is a reading of the batcher's clock."""
        item = self._admit(payload, length, deadline)
        try:
            done = await self._clock.wait(item.future, deadline)
        except asyncio.CancelledError:  # client went away: its item must not reach compute
            self._abandon(item)
            raise
        if not done and not item.started:
            self._abandon(item)
            self._metrics.reject("deadline")
            waited = self._clock.now() - item.enqueued
            raise DeadlineExceeded(
                f"deadline passed after {waited:.3f}s waiting in the {self.component} queue of model {self.model!r}"
            )
        # Done, or computing right now: the work is already paid for, so wait for its answer.
        return await item.future

    async def submit_many(self, payloads: list, lengths: list[int], *, deadline: float) -> list[tuple[Any, BatchInfo]]:
        """Several payloads of one caller (a video's frames), each queued as its own item but admitted together
        and waited on with one timer: the first refusal or failure drops them all, and at the deadline, if any
        is not computing yet, the rest are dropped and the call is DeadlineExceeded."""
        items: list[_Item] = []
        every: asyncio.Future | None = None
        try:
            for payload, length in zip(payloads, lengths, strict=True):
                items.append(self._admit(payload, length, deadline))
            every = asyncio.gather(*(item.future for item in items))
            every.add_done_callback(_retrieved)
            if not await self._clock.wait(every, deadline) and not all(item.started for item in items):
                self._metrics.reject("deadline")
                waiting = sum(not item.started for item in items)
                raise DeadlineExceeded(f"deadline passed with {waiting} of {len(items)} items waiting in the "
                                       f"{self.component} queue of model {self.model!r}")  # fmt: skip
            return list(await every)
        except BaseException:  # refused, failed, expired or the caller went away: none of them may run now
            if every is not None:
                every.cancel()
            for item in items:
                self._abandon(item)
            raise

    def _admit(self, payload: Any, length: int, deadline: float) -> _Item:
        """Synchronous on purpose: a rejection is answered without yielding to the loop."""
        if not self._accepting:
            raise self._stopped_with or NotReady(f"{self.component} batcher of model {self.model!r} is not running")
        if length < 1:
            raise ValueError(f"item length must be >= 1, got {length}")
        now = self._clock.now()
        if deadline <= now:
            self._metrics.reject("deadline")
            raise DeadlineExceeded(f"deadline already passed before the {self.component} queue")
        if len(self._queue) >= self.policy.max_queue:
            self._metrics.reject("queue_full")
            raise QueueFull(
                f"{self.component} queue of model {self.model!r} is full (max_queue={self.policy.max_queue} items)",
                headers={"Retry-After": "1"},
            )
        item = _Item(payload, length, deadline, now, asyncio.get_running_loop().create_future(), trace=spans.waiting())
        self._queue[item] = None
        self._metrics.depth_soon(self._queue)
        self._wake()  # a sleeping loop re-decides at every arrival; a computing one looks when done
        return item

    def _abandon(self, item: _Item) -> None:
        if item in self._queue:
            del self._queue[item]
            self._metrics.depth_soon(self._queue)
        item.future.cancel()  # the loop skips done futures, even if it already took the item

    # ---- the owner loop ------------------------------------------------------------------------

    async def _loop(self) -> None:
        try:
            while (window := await self._next_window()) is not None:
                self._held = window
                lengths = [it.length for it in window]
                for indices in plan_batches(lengths, self.policy.max_batch_size, self.policy.budget):
                    await self._run([window[i] for i in indices])
                self._held = []
        except Exception:  # a bug must not leave callers hanging (cancellation passes through)
            log.exception("%s batcher of model %r crashed", self.component, self.model)
        finally:
            self._fail_pending()

    async def _next_window(self) -> list[_Item] | None:
        """Items for the next window, or None once stopped and drained."""
        while True:
            if not self._queue:
                if not self._accepting:
                    return None
                await self._wait(None)
                continue
            now = self._clock.now()
            wait_s = self._company_wait_s(now) if self._accepting else 0.0  # stopping: nobody is coming
            if wait_s <= 0:
                return self._take()
            await self._wait(now + wait_s)

    def _company_wait_s(self, now: float) -> float:
        if len(self._queue) < 2:  # a lone item never waits: decided without a look at the queue
            return 0.0
        oldest, newest = next(iter(self._queue)).enqueued, next(reversed(self._queue)).enqueued
        lengths = [it.length for it in self._queue]
        return company_wait_s(lengths, oldest, newest, now, self.policy)

    async def _wait(self, until: float | None) -> None:
        # A fresh future per wait, no polling: the caller re-checked every condition with no await
        # since, so a wake-up can only be missed while the loop is busy, and then it looks anyway.
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._clock.wait(self._waiter, until)
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _take(self) -> list[_Item]:
        taken: list[_Item] = []
        now = self._clock.now()
        while self._queue and len(taken) < self.policy.max_batch_size:
            item, _ = self._queue.popitem(last=False)
            if self._live(item, now):  # expired items: their caller's own timer answers them
                taken.append(item)
        self._metrics.depth.set(len(self._queue))
        return taken

    @staticmethod
    def _live(item: _Item, now: float) -> bool:
        return not item.future.done() and item.deadline > now

    async def _run(self, batch: list[_Item]) -> None:
        now = self._clock.now()
        batch = [it for it in batch if self._live(it, now)]  # re-check: earlier batches took time
        if not batch:
            return
        for it in batch:
            it.started = True
        start, elsewhere_s = self._clock.now(), 0.0
        try:
            with spans.batch_span(self.component, self.model, [it.trace for it in batch]):
                results = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._run_batch, [it.payload for it in batch]
                )
            if isinstance(results, Computed):
                results, elsewhere_s = results.results, results.elsewhere_s
            if len(results) != len(batch):
                raise RuntimeError(
                    f"{self.component} run_batch returned {len(results)} results for {len(batch)} inputs"
                )
        except Exception as exc:  # the batch's callers get it; the loop keeps serving
            results, error = [], exc
        else:
            error = None
        infer_s = max(0.0, self._clock.now() - start - elsewhere_s)
        self._metrics.batch([it.length for it in batch], [start - it.enqueued for it in batch], infer_s)
        if error is not None:
            self._answer(batch, error)
            return
        self._deliver([(it, (result, BatchInfo(len(batch), start - it.enqueued, infer_s)))
                       for it, result in zip(batch, results, strict=True)])  # fmt: skip

    def _deliver(self, answers: list[tuple[_Item, tuple[Any, BatchInfo]]]) -> None:
        """Answer DELIVER_CHUNK callers now and the rest in later loop iterations, so that the event loop
        polls its sockets between chunks: a refusal (429) arriving as a batch of 32 ends waits behind a
        few responses, not all 32. The owner loop does not wait for this: the next batch starts at once."""
        chunk = self._answer_chunk or len(answers)
        for it, answer in answers[:chunk]:
            if not it.future.done():  # the caller may have been cancelled meanwhile
                it.future.set_result(answer)
        if len(answers) > chunk:
            asyncio.get_running_loop().call_soon(self._deliver, answers[chunk:])

    @staticmethod
    def _answer(items: list[_Item], error: BaseException) -> None:
        for it in items:
            if not it.future.done():
                it.future.set_exception(error)

    def _fail_pending(self) -> None:
        """The loop is ending: nothing queued or held may wait forever."""
        self._accepting = False
        pending = self._held + list(self._queue)
        self._queue.clear()
        self._held = []
        self._metrics.depth.set(0)
        self._answer(
            pending, self._stopped_with or NotReady(f"{self.component} batcher of model {self.model!r} stopped")
        )
