"""Pure helpers of the batcher: cutting a window into batches under a padding budget.

Kept apart from the asyncio machinery so the packing rule can be read and tested on its own.
"""

from __future__ import annotations


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
