"""Warm-up batches a version runs before it takes traffic.

Two kinds: small batches shaped like real traffic (`FUSIONSERVE_WARMUP_BATCH_SIZES`), which build ORT's
kernels and thread pools, and — like TEI's warm-up at its token budget — each encoder's *largest batch
the batcher can form* (`FUSIONSERVE_WARMUP_LARGEST_BATCH`): the longest items the limits accept, as many
as the batch size and the padding budget admit. ORT's CPU arena grows to the largest batch it has seen and
never shrinks, so paying that batch at load means RSS under load stays where it was at ready (and a pod
too small for its budgets fails at start, not in traffic; the measurements: docs/design-choices.md, "The arena
is paid at load").
"""

from __future__ import annotations

import numpy as np

from service.engine.batch_window import plan_batches
from service.engine.bundle import LoadedBundle
from service.engine.components import item_length
from service.engine.pipeline import policy_for
from service.items import PreparedItem
from service.manifest import MODALITIES
from service.preprocess.waveform import input_length, silence
from service.settings import Settings

TRAFFIC_AUDIO_SECONDS = 2.0  # text keeps the natural length of "warm up"


def _array(bundle: LoadedBundle, modality: str, length: int | None):
    """A zero input of `modality`: image [3,S,S] f32 · text (ids [L], mask [L]) i64 · audio [n_mels or 1, L] f32."""
    encoders = bundle.manifest.encoders
    if modality == "image":
        size = encoders.image.preprocess.size
        return np.zeros((3, size, size), np.float32)
    if modality == "text":
        ids = np.asarray(bundle.tokenizer.encode("warm up").ids, np.int64)
        ids = ids if length is None else np.resize(ids, length)
        return ids, np.ones_like(ids)
    return silence(length, encoders.audio.preprocess)


def _present(bundle: LoadedBundle) -> list[str]:
    return [m for m in MODALITIES if getattr(bundle.manifest.encoders, m) is not None]


def traffic_items(bundle: LoadedBundle) -> list[PreparedItem]:
    """One synthetic item with every modality, shaped like real traffic."""
    encoders = bundle.manifest.encoders
    lengths = {"audio": input_length(TRAFFIC_AUDIO_SECONDS, encoders.audio.preprocess)} if encoders.audio else {}
    return [PreparedItem({m: _array(bundle, m, lengths.get(m)) for m in _present(bundle)})]


def longest_lengths(bundle: LoadedBundle, settings: Settings) -> dict[str, int]:
    """Per variable-length modality, the longest item the limits let through: tokens, mel frames or samples."""
    encoders, lengths = bundle.manifest.encoders, {}
    if encoders.text:
        lengths["text"] = encoders.text.preprocess.max_length  # longer texts are cut (or refused)
    if encoders.audio:
        spec = encoders.audio.preprocess
        seconds = min(settings.max_audio_seconds, spec.max_seconds)  # decode_audio's limit
        lengths["audio"] = input_length(seconds, spec)
    return lengths


def largest_batches(bundle: LoadedBundle, settings: Settings) -> list[list[PreparedItem]]:
    """Each encoder's largest batch: the first batch its batcher's policy cuts from a queue of the longest
    items (one single-modality list per encoder; fusion runs on each)."""
    longest, batches = longest_lengths(bundle, settings), []
    for modality in _present(bundle):
        policy, array = policy_for(modality, settings), _array(bundle, modality, longest.get(modality))
        cost = item_length(modality, array, getattr(bundle.manifest.encoders, modality))  # as the pipeline counts it
        size = len(plan_batches([cost] * policy.max_batch_size, policy.max_batch_size, policy.budget)[0])
        batches.append([PreparedItem({modality: array})] * size)
    return batches


def warmup_batches(bundle: LoadedBundle, settings: Settings) -> list[list[PreparedItem]]:
    batches = [traffic_items(bundle) * size for size in settings.warmup_batch_sizes]
    return batches + (largest_batches(bundle, settings) if settings.warmup_largest_batch else [])
