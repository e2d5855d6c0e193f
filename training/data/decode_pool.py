"""Decode the next chunk of items while the encoder runs on the current one, so the device never waits.

Decoding (service.preprocess: Pillow, soxr, the tokenizer, numpy) releases the GIL for most of its time, so a
thread pool overlaps it with the encoder (ORT and torch release the GIL too). `workers=0` decodes serially in
the caller's thread, exactly as before; any worker count gives the same items in the same order (each chunk is
sorted by length after decoding, as the serial path sorts it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers(device_type: str) -> int:
    """Decode threads for a device: on a GPU every spare core decodes (the encoder needs only one to feed it);
    on a CPU the encoder's own threads already fill the cores, and overlapping only pays with cores to spare
    (measured on 2 cores: bench/results/features/README.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if device_type == "cuda":
        return max(1, min(cores - 1, 16))
    return 1 if cores > 2 else 0


def decoded_chunks(chunks: Sequence[Sequence[T]], decode: Callable[[T], R], workers: int) -> Iterator[list[R]]:
    """Yield [decode(item) for item in chunk] per chunk, in order; with workers > 0 the next chunk is decoded
    in the pool while the caller works on the current one. An exception from decode surfaces at its chunk."""
    if workers <= 0:
        for chunk in chunks:
            yield [decode(item) for item in chunk]
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:

        def submit(index: int) -> list[Future] | None:
            return [pool.submit(decode, item) for item in chunks[index]] if index < len(chunks) else None

        pending = submit(0)
        for index in range(len(chunks)):
            current, pending = pending, submit(index + 1)  # queue the next chunk before waiting on this one
            try:
                yield [future.result() for future in current]
            except BaseException:
                for future in (pending or []) + current:
                    future.cancel()
                raise
