"""The time a Batcher reads and waits on: time.monotonic in production, a clock the test moves in tests.

A batcher asks its clock two things only, what time it is and "wait for this future, but no later than
then", so a test can drive every time-based rule (the max delay, a deadline, the queue time it reports)
by moving a fake clock instead of sleeping and bounding the wall clock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on this clock; deadlines given to a batcher are on the same clock."""
        ...

    async def wait(self, future: asyncio.Future, until: float | None) -> bool:
        """Wait until `future` is done or the clock reads `until` (None: no limit); True if it is done.
        The future is never cancelled by the wait."""
        ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def wait(self, future: asyncio.Future, until: float | None) -> bool:
        """asyncio.wait's result for one future, without its set bookkeeping (a wait per queued item)."""
        if future.done():
            return True
        loop = asyncio.get_running_loop()
        woken = loop.create_future()

        def wake(_=None) -> None:
            if not woken.done():
                woken.set_result(None)

        timer = None if until is None else loop.call_at(loop.time() + (until - time.monotonic()), wake)
        future.add_done_callback(wake)
        try:
            await woken
        finally:
            future.remove_done_callback(wake)
            if timer is not None:
                timer.cancel()
        return future.done()
