"""Batch functions for each bundle component: collate items → one ORT call → one result per item.

These are the `run_batch` callables the batchers execute in worker threads, and what golden-example
replay and warm-up call directly. Variable-length inputs are padded to the longest item of the batch
with zeros and a zero mask, which the exported encoders ignore (masked attention and pooling), so an
item's output does not depend on its batch-mates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from service.engine.batch_window import Computed
from service.engine.runtime import NUMPY_DTYPES, OrtModel
from service.errors import BundleError
from service.manifest import MODALITY_LOGITS, EncoderSpec, FusionSpec, TensorSpec
from service.modalities.registry import modality as modality_spec

TextArrays = tuple[np.ndarray, np.ndarray]  # input_ids [L], attention_mask [L] (int64)


def _cast(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=NUMPY_DTYPES[spec.dtype])


@dataclass
class EncoderComponent:
    modality: str
    model: OrtModel
    spec: EncoderSpec
    frames_multiple: int = 1  # pad the variable axis to a multiple (audio: conv strides; ModalitySpec.pad_multiple)

    def feeds(self, payloads: list) -> dict[str, np.ndarray]:
        # the modality's collation: the trainer's too (service.preprocess.batch.collate)
        arrays = modality_spec(self.modality).collate(payloads, self.frames_multiple)
        return {spec.name: _cast(array, spec) for spec, array in zip(self.spec.inputs, arrays, strict=True)}

    def __call__(self, payloads: list) -> list[np.ndarray]:
        (embedding,) = self.model.run(self.feeds(payloads))[:1]  # [B, D]
        return list(embedding.astype(np.float32, copy=False))


@dataclass
class FusionOutput:
    """One item's row of a fusion batch; probabilities are softmaxed for the whole batch at once."""

    probabilities: np.ndarray  # [C] softmax of the logits
    fused: np.ndarray  # [D]
    modality_probabilities: dict[str, np.ndarray]  # present modality → softmax of its own head's logits [C]


@dataclass
class FusionComponent:
    """payload: {modality: embedding [D]} for the present modalities → FusionOutput."""

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

    def __call__(self, payloads: list[dict[str, np.ndarray]]) -> list[FusionOutput]:
        outputs = dict(zip(self.model.output_names, self.model.run(self.feeds(payloads)), strict=True))
        logits = outputs["logits"].astype(np.float32)  # [B, C]
        fused = outputs["fused"].astype(np.float32)  # [B, D]
        heads = self._modality_probabilities(outputs, payloads, logits.shape)
        return [FusionOutput(*row) for row in zip(softmax(logits), fused, heads, strict=True)]

    def _modality_probabilities(self, outputs: dict, payloads: list[dict], shape: tuple[int, int]) -> list[dict]:
        """Per item {present modality: its head's probabilities [C]}; the rows of absent modalities are dropped."""
        if not self.spec.has_modality_logits:
            return [{} for _ in payloads]
        heads = outputs[MODALITY_LOGITS].astype(np.float32)  # [B, M, C]
        expected = (shape[0], len(self.spec.modalities), shape[1])
        if heads.shape != expected:  # met at golden replay / warm-up, so the version is not loaded
            raise BundleError(f"{self.spec.file}: {MODALITY_LOGITS} has shape {heads.shape}, expected {expected}")
        columns, probabilities = {m: i for i, m in enumerate(self.spec.modalities)}, softmax(heads)
        return [{m: probabilities[row, columns[m]] for m in payload} for row, payload in enumerate(payloads)]


@dataclass
class Encoded:
    """What an encoder batch answers per item in the server."""

    embedding: np.ndarray  # [D]
    fusion: FusionOutput | None = None  # set when the item had only this modality: fused in the same call
    fused_rows: int = 0  # how many rows of the batch went on to fusion with it
    fusion_s: float = 0.0  # seconds of that inline fusion call (part of the encoder call, counted as fusion's)


@dataclass
class EncodeThenFuse:
    """An encoder's batch function in the server. Items that carry only this modality continue straight
    into fusion in the same worker call: for single-modality requests (the common case) the fusion queue
    and two thread hand-offs fall away (docs/design-choices.md, "A single-modality item is fused"). Fusion is
    row-wise, so fusing a subset of rows gives each row what the fusion batcher would. Payload: (encoder input,
    only this modality). `count_fusion` must not be a bound method of the pipeline that owns this: a pipeline
    reachable from its own batchers is a reference cycle, which a frozen heap never collects
    (service/engine/heap.py)."""

    encoder: EncoderComponent
    fusion: FusionComponent
    count_fusion: Callable[[int, float], None]  # (rows, seconds): fusion's metrics count these batches too

    def __call__(self, payloads: list[tuple[object, bool]]) -> Computed:
        embeddings = self.encoder([payload for payload, _ in payloads])  # [B] of [D]
        alone = [row for row, (_, only) in enumerate(payloads) if only]
        outputs, fusion_s = [], 0.0
        if alone:
            started = time.perf_counter()
            outputs = self.fusion([{self.encoder.modality: embeddings[row]} for row in alone])
            fusion_s = time.perf_counter() - started
            self.count_fusion(len(alone), fusion_s)
        fused = dict(zip(alone, outputs, strict=True))
        results = [
            Encoded(e, fused[row], len(alone), fusion_s) if row in fused else Encoded(e)
            for row, e in enumerate(embeddings)
        ]
        return Computed(results, fusion_s)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def item_length(modality: str, payload, spec: EncoderSpec) -> int:
    """Variable length used by the padding budget (ModalitySpec.item_length: tokens for text; mel frames for
    audio, or a waveform's length in hop_length frames; 1 for fixed-size inputs)."""
    return modality_spec(modality).item_length(payload, spec.preprocess)
