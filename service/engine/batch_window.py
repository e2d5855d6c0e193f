"""The batcher's pure parts: its policy, when to cut a window, and how to cut it into batches.

Kept apart from the asyncio machinery so the rules can be read and tested on their own, with no event
loop (the caller passes the clock in).
"""

from __future__ import annotations

from dataclasses import dataclass

# A forming batch waits at most this many mean arrival gaps past the newest arrival: if the stream has
# stopped, the guess costs two gaps, never the whole max delay.
PATIENCE_GAPS = 2.0


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int
    max_delay_s: float  # the longest a forming batch's oldest item may wait for imminent arrivals
    max_queue: int  # items waiting, not counting the batch being computed
    budget: int | None = None  # batch_size * longest_length <= budget; None = fixed-size inputs

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_queue < 1 or self.max_delay_s < 0:
            raise ValueError(f"invalid batch policy: {self}")
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"invalid padding budget: {self.budget}")


@dataclass
class Computed:
    """What a batch function may return instead of a plain list: its results plus the seconds of the call
    that belong to another component (EncodeThenFuse's inline fusion, counted in fusion's series), so the
    batcher records only the rest as its own infer time and every second of compute is counted once."""

    results: list
    elsewhere_s: float = 0.0


def fills_a_batch(lengths: list[int], policy: BatchPolicy) -> bool:
    """The waiting items already make a full first batch: by count, or by padded cells under a budget."""
    if len(lengths) >= policy.max_batch_size:
        return True
    return policy.budget is not None and bool(lengths) and len(lengths) * max(lengths) >= policy.budget


def company_wait_s(lengths: list[int], oldest: float, newest: float, now: float, policy: BatchPolicy) -> float:
    """Seconds the owner loop should still wait for company before cutting the window; 0 = cut now.

    `lengths` are the waiting items' lengths, `oldest` and `newest` their first and last arrival times.

    Waiting pays only when a batch is already forming (two or more items wait), it is not full, and
    the next arrival is due (newest arrival + the mean gap between the waiting items) before the
    oldest item's max delay runs out. The wait lasts at most PATIENCE_GAPS gaps past the newest
    arrival, and the loop re-decides at every arrival, so this is an upper bound. The gap is measured
    on the waiting items, not averaged over history: the quiet spell before a burst must not make the
    burst look sparse, nor a past burst make a quiet stream look dense.
    """
    if len(lengths) < 2 or fills_a_batch(lengths, policy):
        return 0.0
    gap = (newest - oldest) / (len(lengths) - 1)
    limit = oldest + policy.max_delay_s
    if newest + gap >= limit:  # the next arrival would come too late to join
        return 0.0
    return max(0.0, min(limit, newest + PATIENCE_GAPS * gap) - now)


def plan_batches(lengths: list[int], max_batch_size: int, budget: int | None) -> list[list[int]]:
    """Indices of `lengths`, grouped into batches run one after the other.

    Without a budget (fixed-size inputs) the window is one batch in arrival order. With one, the
    window is sorted by length so that similar lengths share a batch (less padding), then cut so that
    len(batch) * longest <= budget; an item longer than the budget alone runs alone.
    """
    if budget is None:
        return [list(range(len(lengths)))] if lengths else []
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):  # stable: ties keep arrival order
        # Sorted ascending, so the newcomer is the longest of the batch it would join.
        too_wide = (len(current) + 1) * lengths[i] > budget
        if current and (too_wide or len(current) >= max_batch_size):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def padding_ratio(lengths: list[int]) -> float:
    """Share of padded cells when `lengths` are padded to the longest: 1 - sum / (n * max)."""
    return 1.0 - sum(lengths) / (len(lengths) * max(lengths))
