"""Waiting for an event in a test: poll a condition until it holds, under one overall bound.

The bound is how long a failure takes to show, not how long the event should take: it is generous, so a slow
or busy machine (one core, other suites beside it) waits longer and still passes, while a condition that never
holds fails with the name of what was awaited. A test never sleeps "long enough" for something to happen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

POLL_S = 0.01


def wait_until(predicate: Callable[[], object], timeout_s: float = 30.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(POLL_S)


async def wait_until_async(
    predicate: Callable[[], object], timeout_s: float = 30.0, what: str = "the condition"
) -> None:
    """The same on an event loop: other tasks (the server under test, in-process) run between polls."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(POLL_S)
