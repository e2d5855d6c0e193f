"""A clock that moves only when the test moves it (service/engine/clock.py's Clock), for the batcher's tests.

Nothing time-based happens by itself: a wait "until t" ends when the test (or a fake run_batch in its worker
thread) advances the clock to t or past it. So a test asserts the exact time something happens, the exact
queue and infer seconds a batch reports, and that nothing happens before, without sleeping or bounding the
wall clock. `wakes()` shows what the code under test is waiting for, so a test advances only once it waits.
"""

from __future__ import annotations

import asyncio
import threading


class FakeClock:
    def __init__(self, start: float = 1000.0):
        self._now = start
        self._lock = threading.Lock()  # advance() may come from a worker thread
        self._timers: dict[asyncio.Future, float] = {}  # touched on the event loop only
        self._loop: asyncio.AbstractEventLoop | None = None

    def now(self) -> float:
        with self._lock:
            return self._now

    def after(self, seconds: float) -> float:
        """The reading `seconds` from now: a deadline for submit."""
        return self.now() + seconds

    def wakes(self) -> list[float]:
        """The readings pending waits end at, soonest first."""
        return sorted(self._timers.values())

    def advance(self, seconds: float) -> None:
        """Move the clock on; waits whose time has come end (from a worker thread: on the loop, soon)."""
        assert seconds >= 0, "a monotonic clock never goes back"
        with self._lock:
            self._now += seconds
        self._end_due_waits()

    def advance_to(self, reading: float) -> None:
        """Move the clock on to exactly `reading` (no sum of steps to round)."""
        with self._lock:
            assert reading >= self._now, "a monotonic clock never goes back"
            self._now = reading
        self._end_due_waits()

    def _end_due_waits(self) -> None:
        if self._loop is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._fire()
        else:
            self._loop.call_soon_threadsafe(self._fire)

    async def wait(self, future: asyncio.Future, until: float | None) -> bool:
        if until is None:
            await asyncio.wait((future,))
            return True
        self._loop = asyncio.get_running_loop()
        timer = self._loop.create_future()
        self._timers[timer] = until
        self._fire()  # a time already passed ends the wait at once, as asyncio.wait's timeout does
        try:
            await asyncio.wait((future, timer), return_when=asyncio.FIRST_COMPLETED)
        finally:
            del self._timers[timer]
            timer.cancel()
        return future.done()

    def _fire(self) -> None:
        now = self.now()
        for timer, until in self._timers.items():
            if until <= now and not timer.done():
                timer.set_result(None)
