"""Thread priority, shared by every process: the engine's compute threads and a front-end's decoding pool both
yield the cores to the event loop."""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("fusionserve")


def lower_priority(nice: int) -> None:
    """Make the calling thread (and the threads it starts, which inherit it) `nice` steps less urgent.

    Compute threads yield the cores to the event loop, so refusing a request (429) or parsing the next one
    never waits behind a batch. Linux sets nice per thread; elsewhere this does nothing.
    """
    if nice > 0 and hasattr(os, "setpriority"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError as error:  # e.g. a sandbox forbidding it: serve anyway
            log.warning("could not lower compute-thread priority: %s", error)
