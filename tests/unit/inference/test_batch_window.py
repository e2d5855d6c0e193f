"""Batch planning rules (length-sorted windows under a padding budget), the wait-for-company rule, and
batch-policy validation."""

from __future__ import annotations

import pytest

from service.engine.batch_window import company_wait_s, fills_a_batch, padding_ratio, plan_batches
from service.engine.batcher import BatchPolicy


def test_plan_batches_rules():
    assert plan_batches([], 4, None) == []
    assert plan_batches([5, 1, 3], 4, None) == [[0, 1, 2]]  # fixed size: arrival order, one batch
    assert plan_batches([5, 1, 3], 4, 100) == [[1, 2, 0]]
    assert plan_batches([1, 1, 1, 1, 1], 2, 100) == [[0, 1], [2, 3], [4]]  # size cap still holds
    assert plan_batches([200, 1], 4, 100) == [[1], [0]]
    assert padding_ratio([2, 4]) == pytest.approx(0.25)


def test_policy_validation():
    for bad in [(0, 0.01, 8), (4, -1.0, 8), (4, 0.01, 0), (4, 0.01, 8, 0)]:
        with pytest.raises(ValueError):
            BatchPolicy(*bad)


def test_fills_a_batch_by_count_or_padded_cells():
    policy = BatchPolicy(4, 0.1, 8, budget=20)
    assert not fills_a_batch([], policy) and not fills_a_batch([3, 3], policy)
    assert fills_a_batch([1, 1, 1, 1], policy)  # max_batch_size
    assert fills_a_batch([2, 10], policy)  # 2 x 10 cells = the budget
    assert not fills_a_batch([10, 10], BatchPolicy(4, 0.1, 8))  # fixed-size inputs: count only


def test_company_wait_rule():
    policy = BatchPolicy(4, 0.1, 8)  # max delay 100 ms

    def wait(n: int, oldest: float, newest: float, now: float, p: BatchPolicy = policy) -> float:
        return company_wait_s([1] * n, oldest, newest, now, p)

    assert wait(1, 0.0, 0.0, 0.0) == 0.0  # a lone item never waits
    assert wait(4, 0.0, 0.003, 0.004) == 0.0  # full
    assert wait(3, 1.0, 1.0, 1.0) == 0.0  # a same-tick burst: gap 0, nothing more is due
    assert wait(2, 0.0, 0.01, 0.011) == pytest.approx(0.019)  # next due at 20 ms: wait up to two gaps (30 ms)
    assert wait(3, 0.0, 0.04, 0.05) == pytest.approx(0.03)  # gap 20 ms: until two gaps past 40 ms = 80 ms
    assert wait(2, 0.0, 0.04, 0.05) == pytest.approx(0.05)  # gap 40 ms: capped by the max delay (100 ms)
    assert wait(2, 0.0, 0.06, 0.061) == 0.0  # next due at 120 ms, after the max delay: go now
    assert wait(2, 0.0, 0.01, 0.05) == 0.0  # two gaps passed with no arrival: the stream stopped
    assert wait(2, 0.0, 0.0001, 0.0001, BatchPolicy(4, 0.0, 8)) == 0.0  # max delay 0 (fusion): never
    assert wait(2, 0.0, 0.01, 0.011, BatchPolicy(4, 0.1, 8, budget=2)) == 0.0  # the budget is full
