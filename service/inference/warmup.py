"""Warm-up batches a version runs before it takes traffic.

Two kinds: small batches shaped like real traffic (`FUSIONSERVE_WARMUP_BATCH_SIZES`), which build ORT's
kernels and thread pools, and — like TEI's warm-up at its token budget — each encoder's *largest batch
the batcher can form* (`FUSIONSERVE_WARMUP_LARGEST_BATCH`): the longest items the limits accept, as many
as the batch size and the padding budget admit. ORT's CPU arena grows to the largest batch it has seen and
never shrinks, so paying that batch at load means RSS under load stays where it was at ready (and a pod
too small for its budgets fails at start, not in traffic). Measured on the default bundle: the audio
encoder's arena after a soak-like schedule grew +39 MB without it, +11 MB after it (docs/design-choices.md).
"""

from __future__ import annotations

import numpy as np

from service.inference.bundle import LoadedBundle
from service.inference.prepare import PreparedItem
from service.preprocess.mel import num_frames
from service.settings import Settings


def traffic_items(bundle: LoadedBundle) -> list[PreparedItem]:
    """One synthetic item with every modality, shaped like real traffic."""
    encoders, arrays = bundle.manifest.encoders, {}
    if encoders.image:
        size = encoders.image.preprocess.size
        arrays["image"] = np.zeros((3, size, size), np.float32)
    if encoders.text:
        ids = np.asarray(bundle.tokenizer.encode("warm up").ids, np.int64)
        arrays["text"] = (ids, np.ones_like(ids))
    if encoders.audio:
        arrays["audio"] = np.zeros((encoders.audio.preprocess.n_mels, 200), np.float32)
    return [PreparedItem(arrays)]


def longest_lengths(bundle: LoadedBundle, settings: Settings) -> dict[str, int]:
    """Per variable-length modality, the longest item the limits let through: tokens, mel frames."""
    encoders, lengths = bundle.manifest.encoders, {}
    if encoders.text:
        lengths["text"] = encoders.text.preprocess.max_length  # longer texts are cut (or refused)
    if encoders.audio:
        spec = encoders.audio.preprocess
        seconds = min(settings.max_audio_seconds, spec.max_seconds)  # decode_audio's limit
        lengths["audio"] = num_frames(int(seconds * spec.sample_rate), spec)
    return lengths


def largest_batches(bundle: LoadedBundle, settings: Settings) -> list[list[PreparedItem]]:
    """Each encoder's largest batch (one single-modality list per encoder; fusion runs on each)."""
    encoders, longest = bundle.manifest.encoders, longest_lengths(bundle, settings)
    budgets = {"text": settings.text_token_budget, "audio": settings.audio_frame_budget}
    batches = []
    for modality in ("image", "text", "audio"):
        if getattr(encoders, modality) is None:
            continue
        size = settings.batch_size_for(modality)
        if modality in longest:  # batch * longest <= budget; an item over the budget runs alone
            size = max(1, min(size, budgets[modality] // longest[modality]))
        batches.append([_longest_item(bundle, modality, longest.get(modality, 1))] * size)
    return batches


def _longest_item(bundle: LoadedBundle, modality: str, length: int) -> PreparedItem:
    encoders = bundle.manifest.encoders
    if modality == "image":
        size = encoders.image.preprocess.size
        return PreparedItem({"image": np.zeros((3, size, size), np.float32)})
    if modality == "text":
        ids = np.resize(np.asarray(bundle.tokenizer.encode("warm up").ids, np.int64), length)  # [length]
        return PreparedItem({"text": (ids, np.ones_like(ids))})
    return PreparedItem({"audio": np.zeros((encoders.audio.preprocess.n_mels, length), np.float32)})


def warmup_batches(bundle: LoadedBundle, settings: Settings) -> list[list[PreparedItem]]:
    batches = [traffic_items(bundle) * size for size in settings.warmup_batch_sizes]
    return batches + (largest_batches(bundle, settings) if settings.warmup_largest_batch else [])
