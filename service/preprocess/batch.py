"""One batch collation for the server and the trainer: it decides parity, so there is exactly one.

An item is one modality's encoder inputs: image (pixels [3,S,S],), text (ids [L], mask [L]) or audio
(log-mel [n_mels,T],); a bare array is read as a one-tuple. Variable-length inputs are zero-padded at the
end to the batch's longest item (audio: rounded up to `frames_multiple`, for conv strides) with a zero
mask, which the exported encoders ignore (masked attention and pooling): an item's output does not depend
on its batch-mates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Item = tuple[np.ndarray, ...] | np.ndarray


def pad_stack(rows: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Stack 1-D or 2-D arrays, zero-padding their last axis to `length`. → [B, ..., length]"""
    out = np.zeros((len(rows), *rows[0].shape[:-1], length), dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        out[i, ..., : row.shape[-1]] = row
    return out


def collate(modality: str, items: Sequence[Item], frames_multiple: int = 1) -> tuple[np.ndarray, ...]:
    """Items of one modality → the encoder's batched inputs, in the order of its ONNX inputs."""
    if not items:
        raise ValueError("collate needs at least one item")
    tuples = [item if isinstance(item, tuple) else (item,) for item in items]
    if modality == "image":
        return (np.stack([item[0] for item in tuples]),)  # [B,3,S,S]
    longest = max(item[0].shape[-1] for item in tuples)
    if modality == "text":
        ids = pad_stack([item[0] for item in tuples], longest)  # [B,L]
        mask = pad_stack([item[1] for item in tuples], longest)  # [B,L]
        return ids, mask
    if modality == "audio":
        length = -(-longest // frames_multiple) * frames_multiple
        mels = pad_stack([item[0] for item in tuples], length)  # [B,n_mels,T]
        frame_mask = pad_stack([np.ones(item[0].shape[-1], np.float32) for item in tuples], length)  # [B,T]
        return mels, frame_mask
    raise ValueError(f"unknown modality {modality!r}")
