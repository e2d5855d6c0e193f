"""Door admission's measurements, per model version: requests in flight, the drain rate (best recent whole
second of completions) and the refused demand, from which the data plane judges the expected wait of a new
request and the Retry-After of a refused one."""

from __future__ import annotations

import math
from collections import deque

CAPACITY_WINDOW_S = 10  # whole seconds whose completion counts the drain rate is the best of
MAX_RETRY_AFTER_S = 30


class DrainMeter:
    """Requests in flight for one model version, and its drain rate: the most requests it completed in
    one whole second of the last CAPACITY_WINDOW_S. A capacity, not the current pace: refusals cost CPU
    under overload, and a bound judged by the current completion rate would shrink with it and refuse
    ever more (a spiral); the best recent second does not move."""

    peers = 1  # processes refusing for the same capacity (EngineMeter: the front-ends)

    def __init__(self, window_s: int = CAPACITY_WINDOW_S):
        self.in_flight, self.window_s = 0, window_s  # in_flight: admitted here, not finished
        self._seconds: deque[list[int]] = deque()  # [whole second (monotonic), completions in it]
        self._refused: deque[list[int]] = deque(maxlen=2)  # [whole second, refusals in it]: this one, the last

    def admitted(self) -> None:
        self.in_flight += 1

    def completed(self, now: float, served: bool = True) -> None:
        """One admitted request left; only one that was served counts toward the drain rate: a burst of cheap
        refusals (4xx) or callers gone (499) says nothing of how fast the version serves, and counting them
        would raise the measured capacity and loosen the door."""
        self.in_flight -= 1
        if served:
            _count(self._seconds, int(now))

    def refused(self, now: float) -> None:
        _count(self._refused, int(now))

    def rate(self, now: float) -> float | None:
        """Completions per second of the best recent whole second; None with fewer than 8 (cold)."""
        current = int(now)
        while self._seconds and self._seconds[0][0] < current - self.window_s:
            self._seconds.popleft()
        best = max((count for second, count in self._seconds if second < current), default=0)
        return float(best) if best >= 8 else None

    def load(self) -> int:
        """Requests in flight for the capacity this meter judges (here: this process's)."""
        return self.in_flight

    def expected_wait_s(self, now: float) -> float | None:
        rate = self.rate(now)
        return None if rate is None else self.load() / rate

    def retry_after_s(self, now: float) -> int:
        """Whole seconds a refused client should wait: until the admitted work drains, or — when many are
        refused — until the refused demand of the last second could be served at the drain rate. Telling
        them all "1" brings them back together, to be refused again, and refusing the same clients over and
        over becomes the event loop's main work (docs/design-choices.md, "Door admission")."""
        return retry_after_s(self.load(), self.refused_demand(now) * self.peers, self.rate(now))

    def refused_demand(self, now: float) -> int:
        """Refusals in this or the last whole second."""
        current = int(now)
        return max((n for second, n in self._refused if second >= current - 1), default=0)


def retry_after_s(in_flight: int, demand: int, rate: float | None) -> int:
    """Whole seconds until `max(in_flight, demand)` requests drain at `rate` (1 when cold); at most 30 s."""
    if rate is None:  # cold: nothing to scale by
        return 1
    return min(MAX_RETRY_AFTER_S, max(1, math.ceil(max(in_flight, demand) / rate)))


def _count(seconds: deque[list[int]], second: int) -> None:
    """One more event in `second` of a deque of [whole second, events in it]."""
    if seconds and seconds[-1][0] == second:
        seconds[-1][1] += 1
    else:
        seconds.append([second, 1])


class EngineMeter(DrainMeter):
    """A front-end's door for one model version in multi-process mode: the engines' whole load — this
    front-end's admitted requests (exact, counted here) plus the other front-ends' requests each engine
    reports (with every answer and heartbeat) — at the sum of the engines' drain rates. Refused demand is
    this front-end's, times the front-ends."""

    def __init__(self, front_ends: int):
        super().__init__()
        self.peers = front_ends
        self.reports: dict[str, tuple[int, float | None]] = {}  # per engine: other front-ends' requests, rate

    def load(self) -> int:
        return sum(others for others, _ in self.reports.values()) + self.in_flight

    def rate(self, now: float) -> float | None:
        rates = [rate for _, rate in self.reports.values() if rate is not None]
        return sum(rates) if rates else None
