"""Images: an encoded file (JPEG, PNG, WebP, BMP) → pixels [3,S,S] (float32 normalised, or uint8 when the
graph normalises), a fixed size, so batches are stacked and every item costs the same."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.manifest import ImageEncoder, ImagePreprocess
from service.modalities.spec import Item, ModalitySpec, PartNames, as_tuples
from service.preprocess.image import ACCEPTED_IMAGE_FORMATS, decode_image, sniff_image_format


class ImageModality(ModalitySpec):
    name = "image"
    parts = PartNames(v1="image", v2="image", openai="image_url")
    encoded_file = True
    accepted_formats = ACCEPTED_IMAGE_FORMATS
    encoder_class = ImageEncoder
    preprocess_class = ImagePreprocess
    limit_setting = "max_image_pixels"

    def sniff(self, data: bytes) -> str | None:
        return sniff_image_format(data)

    def decode(self, value, preprocess: ImagePreprocess, settings, field: str, tokenizer=None) -> np.ndarray:
        return decode_image(value, preprocess, max_pixels=self.limit(preprocess, settings), field=field)

    def collate(self, items: Sequence[Item], pad_multiple: int = 1) -> tuple[np.ndarray, ...]:
        return (np.stack([item[0] for item in as_tuples(items)]),)  # [B,3,S,S]

    def warmup_input(self, preprocess: ImagePreprocess, length: int | None, tokenizer=None) -> np.ndarray:
        # float32 whichever `normalise`: the encoder component casts to the graph's input dtype
        return np.zeros((3, preprocess.size, preprocess.size), np.float32)


IMAGE = ImageModality()
