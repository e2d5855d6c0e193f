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

from service.engine.batch_window import plan_batches
from service.engine.bundle import LoadedBundle
from service.engine.components import item_length
from service.engine.pipeline import policy_for
from service.items import PreparedItem, RawItem
from service.modalities.registry import modality as modality_spec
from service.settings import Settings


def _array(bundle: LoadedBundle, modality: str, length: int | None):
    """A synthetic input of `modality` (ModalitySpec.warmup_input), `length` long on its variable axis; what
    it takes is what decoding would (a video's: the bundle's segmentation, ModalitySpec.preprocess_of)."""
    preprocess = modality_spec(modality).preprocess_of(bundle.manifest, RawItem(), None)
    return modality_spec(modality).warmup_input(preprocess, length, bundle.tokenizer)


def traffic_items(bundle: LoadedBundle) -> list[PreparedItem]:
    """One synthetic item with every modality, shaped like real traffic."""
    return [PreparedItem({m: _array(bundle, m, None) for m in bundle.manifest.modalities()})]


def longest_lengths(bundle: LoadedBundle, settings: Settings) -> dict[str, int]:
    """Per variable-length modality, the longest item the limits let through: tokens, mel frames or samples."""
    lengths = {}
    for modality in bundle.manifest.modalities():
        preprocess = bundle.manifest.encoder(modality).preprocess
        length = modality_spec(modality).longest_length(preprocess, settings)
        if length is not None:
            lengths[modality] = length
    return lengths


def largest_batches(bundle: LoadedBundle, settings: Settings) -> list[list[PreparedItem]]:
    """Each encoder's largest batch: the first batch its batcher's policy cuts from a queue of the longest
    items (one single-modality list per encoder; fusion runs on each)."""
    longest, batches = longest_lengths(bundle, settings), []
    for modality in bundle.manifest.modalities():
        policy, array = policy_for(modality, settings), _array(bundle, modality, longest.get(modality))
        cost = item_length(modality, array, bundle.manifest.encoder(modality))  # as the pipeline counts it
        size = len(plan_batches([cost] * policy.max_batch_size, policy.max_batch_size, policy.budget)[0])
        batches.append([PreparedItem({modality: array})] * size)
    return batches


def warmup_batches(bundle: LoadedBundle, settings: Settings) -> list[list[PreparedItem]]:
    batches = [traffic_items(bundle) * size for size in settings.warmup_batch_sizes]
    return batches + (largest_batches(bundle, settings) if settings.warmup_largest_batch else [])
