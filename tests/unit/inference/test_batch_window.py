"""Batch planning rules (length-sorted windows under a padding budget) and batch-policy validation."""

from __future__ import annotations

import pytest

from service.inference.batch_window import padding_ratio, plan_batches
from service.inference.batcher import BatchPolicy


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
