"""The registered modalities, in service.manifest.MODALITIES order (the one list of their names: the manifest
schema is imported by the modalities, so it cannot import them). Adding one: docs/architecture.md
"Adding a modality".

Callers look specs up through these functions, never by binding MODALITIES, so a test may swap the
registry for a copy with one more modality (tests/unit/modalities/test_registry.py).
"""

from __future__ import annotations

from service import manifest
from service.modalities.audio import AUDIO
from service.modalities.image import IMAGE
from service.modalities.spec import ModalitySpec
from service.modalities.text import TEXT
from service.modalities.video import VIDEO

REGISTERED: tuple[ModalitySpec, ...] = (IMAGE, TEXT, AUDIO, VIDEO)


def ordered(specs: tuple[ModalitySpec, ...], names: tuple[str, ...]) -> dict[str, ModalitySpec]:
    """`specs` by name in the order of `names`, which must name exactly them."""
    by_name = {spec.name: spec for spec in specs}
    if len(by_name) != len(specs) or set(by_name) != set(names):
        raise RuntimeError(f"registered modalities {sorted(by_name)} != service.manifest.MODALITIES {list(names)}")
    return {name: by_name[name] for name in names}


MODALITIES: dict[str, ModalitySpec] = ordered(REGISTERED, manifest.MODALITIES)


def names() -> tuple[str, ...]:
    return tuple(MODALITIES)


def specs() -> list[ModalitySpec]:
    return list(MODALITIES.values())


def get(name: str) -> ModalitySpec | None:
    """The spec of `name`, None for a name that is no modality (fusion)."""
    return MODALITIES.get(name)


def modality(name: str) -> ModalitySpec:
    spec = MODALITIES.get(name)
    if spec is None:
        raise KeyError(f"unknown modality {name!r}; registered: {', '.join(MODALITIES)}")
    return spec


def by_part(protocol: str, part: str) -> ModalitySpec | None:
    """The modality whose input `protocol` ("v1", "v2", "openai") names `part`, or None."""
    return next((spec for spec in MODALITIES.values() if getattr(spec.parts, protocol) == part), None)
