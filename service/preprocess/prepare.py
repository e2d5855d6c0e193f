"""Raw request item (bytes / text) → arrays the encoders take, using service.preprocess.

Runs in the preprocessing thread pool, never on the event loop. Every failure is a FusionError
naming the field, so the HTTP layer can answer 4xx.
"""

from __future__ import annotations

import time

from service import preprocess
from service.errors import InvalidInput
from service.items import PreparedItem, RawItem
from service.manifest import Manifest
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


def prepare_item(raw: RawItem, manifest: Manifest, tokenizer, settings: Settings) -> PreparedItem:
    check_modalities(raw, manifest)
    started = time.perf_counter()
    encoders, arrays = manifest.encoders, {}
    if raw.image is not None:
        arrays["image"] = preprocess.decode_image(
            raw.image,
            encoders.image.preprocess,
            max_pixels=settings.max_image_pixels,
            field=raw.field("image"),
        )
    if raw.text is not None:
        field_name = raw.field("text")
        text = preprocess.decode_text(raw.text, max_chars=settings.max_text_chars, field=field_name)
        arrays["text"] = preprocess.encode_text(text, tokenizer, encoders.text.preprocess, field=field_name)
    if raw.audio is not None:
        spec = encoders.audio.preprocess
        arrays["audio"] = preprocess.decode_audio(
            raw.audio,
            spec,
            max_seconds=min(settings.max_audio_seconds, spec.max_seconds),
            field=raw.field("audio"),
        )
    return PreparedItem(arrays, decode_s=time.perf_counter() - started)
