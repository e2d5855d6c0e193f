"""Keep the garbage collector's full collections off the long-lived heap of a serving process.

CPython's gen-2 collection walks every tracked object. A loaded server holds ~90k of them that live as long
as it does (modules, FastAPI's routes and pydantic models, sessions, tokenizers); under overload about ten
gen-2 collections per 25 s then stalled the event loop 50-100 ms each, and a 429 that should take a few ms
waited behind them (bench/overload.py at 16x, two runs each on one machine: 429 p99 39 and 84 ms before,
33 and 42 ms after; event-loop lags over 50 ms 11-12 → 2-3 per run). So once
a version is warm, collect once and freeze what is alive (gc.freeze: a permanent generation the collector
skips); requests' short-lived objects are collected as before. `thaw` at shutdown hands everything back, so
a process that serves, stops and goes on (the test suite) can still free what it no longer uses, and an
unload collects once with nothing frozen, so a retired version never stays behind in the frozen heap.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc


def freeze() -> None:
    """Collect, then exempt every object alive now from future collections. On a live reload the one
    collection costs the event loop a few tens of ms, once per loaded version."""
    gc.collect()
    gc.freeze()


def thaw() -> None:
    gc.unfreeze()


def collect_retired() -> None:
    """After a version is unloaded: whatever of it is still alive only through a reference cycle was frozen
    with the rest and would never be freed, so thaw, collect, freeze again. Unloads are rare; the full
    collection costs the event loop a few tens of ms once."""
    gc.unfreeze()
    freeze()
    _trim_malloc()


def _trim_malloc() -> None:
    """Hand the freed sessions' pages back to the system. glibc keeps freed chunks under its mmap threshold
    (which grows to 32 MB as large blocks are freed) in its arenas, where the next load's threads often do
    not reuse them: without this RSS crept on for several reloads after the sessions themselves were gone."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
        ctypes.CDLL("libc.so.6").malloc_trim(0)
