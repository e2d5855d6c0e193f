"""Batch functions for each bundle component: collate items → one ORT call → one result per item.

These are the `run_batch` callables the batchers execute in worker threads, and what golden-example
replay and warm-up call directly. Variable-length inputs are padded to the longest item of the batch
with zeros and a zero mask, which the exported encoders ignore (masked attention and pooling), so an
item's output does not depend on its batch-mates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.inference.runtime import NUMPY_DTYPES, OrtModel
from service.manifest import EncoderSpec, FusionSpec, TensorSpec

TextArrays = tuple[np.ndarray, np.ndarray]  # input_ids [L], attention_mask [L] (int64)


def _cast(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=NUMPY_DTYPES[spec.dtype])


def _pad_stack(rows: list[np.ndarray], length: int) -> np.ndarray:
    """Stack 1-D or 2-D arrays, zero-padding their last axis to `length`."""
    out = np.zeros((len(rows), *rows[0].shape[:-1], length), dtype=rows[0].dtype)
    for i, row in enumerate(rows):
        out[i, ..., : row.shape[-1]] = row
    return out


@dataclass
class EncoderComponent:
    modality: str
    model: OrtModel
    spec: EncoderSpec
    frames_multiple: int = 1  # audio: pad the frame axis to a multiple (conv strides)

    def feeds(self, payloads: list) -> dict[str, np.ndarray]:
        inputs = self.spec.inputs
        if self.modality == "image":  # payloads: [3, S, S] each
            return {inputs[0].name: _cast(np.stack(payloads), inputs[0])}
        if self.modality == "text":  # payloads: (ids [L], mask [L])
            length = max(len(ids) for ids, _ in payloads)
            ids = _pad_stack([p[0] for p in payloads], length)  # [B, L]
            mask = _pad_stack([p[1] for p in payloads], length)  # [B, L]
            return {inputs[0].name: _cast(ids, inputs[0]), inputs[1].name: _cast(mask, inputs[1])}
        # audio payloads: log-mel [n_mels, T]
        longest = max(p.shape[-1] for p in payloads)
        length = -(-longest // self.frames_multiple) * self.frames_multiple
        mel = _pad_stack(payloads, length)  # [B, n_mels, T]
        mask = _pad_stack([np.ones(p.shape[-1], np.float32) for p in payloads], length)  # [B, T]
        return {inputs[0].name: _cast(mel, inputs[0]), inputs[1].name: _cast(mask, inputs[1])}

    def __call__(self, payloads: list) -> list[np.ndarray]:
        (embedding,) = self.model.run(self.feeds(payloads))[:1]  # [B, D]
        return list(embedding.astype(np.float32, copy=False))


@dataclass
class FusionComponent:
    """payload: {modality: embedding [D]} for the present modalities → (logits [C], fused [D])."""

    model: OrtModel
    spec: FusionSpec
    dim: int

    def feeds(self, payloads: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        batch = len(payloads)
        present = np.zeros((batch, len(self.spec.modalities)), np.float32)  # [B, M]
        feeds = {}
        for column, modality in enumerate(self.spec.modalities):
            embeddings = np.zeros((batch, self.dim), np.float32)  # absent → zeros, present → 0
            for row, payload in enumerate(payloads):
                if modality in payload:
                    embeddings[row] = payload[modality]
                    present[row, column] = 1.0
            feeds[self.spec.inputs[column].name] = _cast(embeddings, self.spec.inputs[column])
        present_spec = self.spec.inputs[len(self.spec.modalities)]
        feeds[present_spec.name] = _cast(present, present_spec)
        return feeds

    def __call__(self, payloads: list[dict[str, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        logits, fused = self.model.run(self.feeds(payloads))[:2]  # [B, C], [B, D]
        return list(zip(logits.astype(np.float32), fused.astype(np.float32), strict=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def item_length(modality: str, payload) -> int:
    """Variable length used by the padding budget: tokens for text, mel frames for audio."""
    if modality == "text":
        return len(payload[0])
    if modality == "audio":
        return int(payload.shape[-1])
    return 1
