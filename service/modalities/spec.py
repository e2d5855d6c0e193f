"""What one modality is to the server: the names its input takes in each protocol, how its bytes become encoder
inputs and within which limits, how a batch of them is collated and what an item costs the padding budget,
and what warm-up feeds its encoder. The generic code (preprocessing, protocols, batching, warm-up) loops over
the registered specs (service/modalities/registry.py) instead of naming image, text or audio.

Plain numpy and service.preprocess: no onnxruntime, no engine or front-end import, because the front-end
processes, the engine and (through service.preprocess.batch.collate) the trainer all use it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel

from service.manifest import EncoderSpec

if TYPE_CHECKING:  # type only: the trainer reaches this module and needs no server settings loaded
    from service.items import RawItem
    from service.manifest import Manifest
    from service.settings import Settings

Item = tuple[np.ndarray, ...] | np.ndarray  # one item's encoder inputs, in the order of its ONNX inputs


@dataclass(frozen=True)
class PartNames:
    """What each protocol calls this modality's input."""

    v1: str  # the v1 multipart part and JSON item field: the modality's name, which v1 errors name (RawItem.field)
    v2: str  # the KServe V2 input tensor
    openai: str | None  # the OpenAI embeddings content-part type; None: not accepted there


class ModalitySpec(ABC):
    """One modality. Subclasses set the class attributes and implement the abstract methods; one instance
    of each is registered."""

    name: ClassVar[str]  # as in service.manifest.MODALITIES and the manifest's `encoders` keys
    parts: ClassVar[PartNames]
    # True: the input is an encoded file (a multipart file part, base64 in JSON and V2 REST); False: UTF-8 text
    encoded_file: ClassVar[bool]
    accepted_formats: ClassVar[tuple[str, ...]] = ()  # what `sniff` recognises and `decode` takes
    notes: ClassVar[str] = ""  # said after the formats in the API descriptions
    encoder_class: ClassVar[type[EncoderSpec]]  # the manifest's encoder entry
    preprocess_class: ClassVar[type[BaseModel]]  # the manifest's preprocessing spec (encoder.preprocess)
    limit_setting: ClassVar[str]  # the Settings field that bounds one input
    budget_setting: ClassVar[str | None] = None  # the Settings field bounding a batch's padded length

    def sniff(self, data: bytes) -> str | None:
        """The accepted format `data` is (by its magic bytes), or None."""
        return None

    def preprocess_of(self, manifest: Manifest, raw: RawItem, deadline: float | None) -> Any:
        """What `decode` takes as `preprocess` for this item: the bundle's preprocessing spec of this modality.
        A modality that reads the request's options or its deadline (video) builds its own, checking the
        options (a FusionError naming the option)."""
        return manifest.encoder(self.name).preprocess

    def limit(self, preprocess: Any, settings: Settings) -> float:
        """The bound on one input that `decode` enforces: the `limit_setting` field (a modality whose bundle
        bounds it too takes the tighter)."""
        return getattr(settings, self.limit_setting)

    @abstractmethod
    def decode(self, value: bytes | str, preprocess: Any, settings: Settings, field: str, tokenizer=None) -> Item:
        """A request's value → this modality's encoder inputs; a FusionError naming `field` when it is refused.
        `tokenizer` is the bundle's (LoadedBundle.tokenizer), for the modalities that need one."""

    @abstractmethod
    def collate(self, items: Sequence[Item], pad_multiple: int = 1) -> tuple[np.ndarray, ...]:
        """Items → the encoder's batched inputs, in the order of its ONNX inputs (`pad_multiple`: what a
        variable length is rounded up to; see `pad_multiple`)."""

    def pad_multiple(self, preprocess: Any) -> int:
        """What `collate` rounds a batch's padded length up to for this bundle (conv strides)."""
        return 1

    def item_length(self, item: Item, preprocess: Any) -> int:
        """What one item counts against the padding budget (1 for fixed-size inputs)."""
        return 1

    def budget(self, settings: Settings) -> int | None:
        """The padding budget of this modality's batches (padded length x batch size), None for no budget."""
        return None if self.budget_setting is None else getattr(settings, self.budget_setting)

    @abstractmethod
    def warmup_input(self, preprocess: Any, length: int | None, tokenizer: Any = None) -> Item:
        """A synthetic item for warm-up, `length` long on its variable axis; None: shaped like real traffic."""

    def longest_length(self, preprocess: Any, settings: Settings) -> int | None:
        """The longest variable length the limits let through (None: fixed size), for warm-up's largest batch."""
        return None

    def description(self) -> str:
        """The API description of this modality's part: its accepted formats, then the notes."""
        *rest, last = self.accepted_formats or ("",)
        formats = f"{', '.join(rest)} or {last}" if rest else last
        return "; ".join(part for part in (formats, self.notes) if part)


def as_tuples(items: Sequence[Item]) -> list[tuple[np.ndarray, ...]]:
    """A bare array is read as a one-tuple."""
    if not items:
        raise ValueError("collate needs at least one item")
    return [item if isinstance(item, tuple) else (item,) for item in items]
