"""Raw request item (bytes / text) → arrays the encoders take, by each modality's spec (service/modalities).

Runs in the preprocessing thread pool, never on the event loop. Every failure is a FusionError
naming the field, so the HTTP layer can answer 4xx.
"""

from __future__ import annotations

import time

from service.errors import InvalidInput
from service.items import PreparedItem, RawItem
from service.manifest import Manifest
from service.modalities.registry import modality as modality_spec
from service.settings import Settings


def check_modalities(raw: RawItem, manifest: Manifest) -> None:
    present = raw.modalities()
    if not present:
        raise InvalidInput(
            f"no input: send at least one of {', '.join(manifest.modalities())}",
            field=raw.prefix.rstrip(".") or None,
        )
    for modality in present:
        if modality not in manifest.modalities():
            raise InvalidInput(
                f"model {manifest.name!r} has no {modality} encoder; it accepts {', '.join(manifest.modalities())}",
                field=raw.field(modality),
            )


def prepare_item(
    raw: RawItem, manifest: Manifest, tokenizer, settings: Settings, deadline: float | None = None
) -> PreparedItem:
    """Each present modality's value through its spec's decode (service/modalities), with the bundle's
    preprocessing spec for it (ModalitySpec.preprocess_of); `deadline` (time.monotonic()) bounds decoding
    that checks it (video, between frames)."""
    check_modalities(raw, manifest)
    started = time.perf_counter()
    arrays, stats = {}, {}
    for name in raw.modalities():
        spec = modality_spec(name)
        preprocess = spec.preprocess_of(manifest, raw, deadline)
        arrays[name] = spec.decode(raw.get(name), preprocess, settings, raw.field(name), tokenizer)
        stats |= getattr(preprocess, "stats", {})  # what decoding measured (video)
    return PreparedItem(arrays, decode_s=time.perf_counter() - started, stats=stats)
