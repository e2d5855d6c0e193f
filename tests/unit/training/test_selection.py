"""Which epoch training keeps: the first best validation accuracy, or with select_tolerance the latest within the
tolerance of the best (a noisy validation split plateaus; the later epoch is the more annealed one)."""

from __future__ import annotations

import pytest

from training.config import TrainConfig
from training.errors import ConfigError
from training.train import improves


def kept(accuracies: list[float], tolerance: float) -> int:
    """The epoch (1-based) the training loop's rule keeps for these validation accuracies."""
    best, epoch, history = -1.0, 0, []
    for i, accuracy in enumerate(accuracies, start=1):
        history.append({"val_accuracy": accuracy})
        if improves(accuracy, history[:-1], best, tolerance):
            best, epoch = accuracy, i
    return epoch


def test_without_tolerance_the_first_best_is_kept():
    assert kept([0.5, 0.9, 0.9, 0.89, 0.7], 0.0) == 2


def test_with_tolerance_the_latest_near_best_is_kept():
    assert kept([0.5, 0.9, 0.85, 0.897, 0.88, 0.896, 0.7], 0.005) == 6
    assert kept([0.5, 0.9, 0.85, 0.897, 0.91, 0.906], 0.005) == 6  # measured against the best so far (0.91)
    assert kept([0.5, 0.9, 0.85, 0.897, 0.91, 0.9], 0.005) == 5


def test_select_tolerance_is_validated():
    with pytest.raises(ConfigError, match="select_tolerance"):
        TrainConfig(select_tolerance=-0.1)
