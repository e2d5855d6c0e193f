"""Temperature scaling recovers a known temperature, lowers ECE, never changes the arg-max; ECE's own values."""

from __future__ import annotations

import numpy as np
import torch

from training.calibration import fit_temperature
from training.metrics import expected_calibration_error


def overconfident(n: int = 4000, classes: int = 5, true_t: float = 3.0, seed: int = 0):
    """Labels drawn from softmax(z); the model reports z * true_t (too sharp by a factor true_t)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, classes, generator=g) * 1.5
    labels = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    return z * true_t, labels


def test_fit_recovers_the_temperature_and_lowers_ece():
    logits, labels = overconfident()
    t = fit_temperature(logits, labels)
    assert abs(t - 3.0) < 0.25
    before = expected_calibration_error(torch.softmax(logits, 1).numpy(), labels.numpy())
    after = expected_calibration_error(torch.softmax(logits / t, 1).numpy(), labels.numpy())
    assert before > 0.1 and after < 0.03
    assert torch.equal((logits / t).argmax(1), logits.argmax(1))


def test_fit_on_no_data_is_identity():
    assert fit_temperature(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)) == 1.0


def test_ece_values():
    # 10 predictions at confidence 0.8, 8 right: perfectly calibrated
    p = np.tile([0.8, 0.2], (10, 1))
    target = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(p, target) < 1e-9
    # all at confidence 0.9, half right: |0.5 − 0.9| = 0.4
    assert abs(expected_calibration_error(np.tile([0.9, 0.1], (10, 1)), np.array([0, 1] * 5)) - 0.4) < 1e-9
    assert expected_calibration_error(np.zeros((0, 2)), np.zeros(0, dtype=int)) is None
