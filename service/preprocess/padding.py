"""Zero-padding of variable-length arrays into one batch array (the modalities' collation, service/modalities)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pad_stack(rows: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Stack 1-D or 2-D arrays, zero-padding their last axis to `length`. → [B, ..., length]"""
    out = np.zeros((len(rows), *rows[0].shape[:-1], length), dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        out[i, ..., : row.shape[-1]] = row
    return out
