"""One batch collation for the server and the trainer: it decides parity, so there is exactly one.

An item is one modality's encoder inputs: image (pixels [3,S,S],), text (ids [L], mask [L]) or audio
(log-mel [n_mels,T],); a bare array is read as a one-tuple. Variable-length inputs are zero-padded at the
end to the batch's longest item (audio: rounded up to `frames_multiple`, for conv strides) with a zero
mask, which the exported encoders ignore (masked attention and pooling): an item's output does not depend
on its batch-mates. Each modality's collation is its spec's (service/modalities); this is the trainer's
entry by name.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.modalities.registry import modality as modality_spec
from service.modalities.spec import Item
from service.preprocess.padding import pad_stack

__all__ = ["Item", "collate", "pad_stack"]


def collate(modality: str, items: Sequence[Item], frames_multiple: int = 1) -> tuple[np.ndarray, ...]:
    """Items of one modality → the encoder's batched inputs, in the order of its ONNX inputs."""
    try:
        spec = modality_spec(modality)
    except KeyError:
        raise ValueError(f"unknown modality {modality!r}") from None
    return spec.collate(items, frames_multiple)
