"""Keep the garbage collector's full collections off the long-lived heap of a serving process.

CPython's gen-2 collection walks every tracked object, and a loaded server holds tens of thousands that live
as long as it does (modules, FastAPI's routes and pydantic models, sessions, tokenizers): under overload each
such walk stalls the event loop, and a 429 that should take a few ms waits behind it (the measurements:
docs/design-choices.md, "The garbage collector"). So once a version is warm, collect once and freeze what is
alive (gc.freeze: a permanent generation the collector skips); requests' short-lived objects are collected as
before. `thaw` at shutdown hands everything back, so
a process that serves, stops and goes on (the test suite) can still free what it no longer uses, and an
unload collects once with nothing frozen, so a retired version never stays behind in the frozen heap.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc


def freeze() -> None:
    """Collect, then exempt every object alive now from future collections. On a live reload the one full
    collection stalls the event loop once per loaded version."""
    gc.collect()
    gc.freeze()


def thaw() -> None:
    gc.unfreeze()


def collect_retired() -> None:
    """After a version is unloaded: whatever of it is still alive only through a reference cycle was frozen
    with the rest and would never be freed, so thaw, collect, freeze again. Unloads are rare; the one full
    collection is paid once per unload."""
    gc.unfreeze()
    freeze()
    _trim_malloc()


def _trim_malloc() -> None:
    """Hand the freed sessions' pages back to the system. glibc keeps freed chunks under its mmap threshold
    (which grows to 32 MB as large blocks are freed) in its arenas, where the next load's threads often do
    not reuse them, so RSS would creep with every reload (docs/design-choices.md, "Why versions leaked")."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim this way
        ctypes.CDLL("libc.so.6").malloc_trim(0)
