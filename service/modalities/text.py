"""Text: UTF-8 → (input_ids [L], attention_mask [L]) int64 by the bundle's tokenizer; a batch is padded to its
longest item with a zero mask, and an item costs its tokens against FUSIONSERVE_TEXT_TOKEN_BUDGET."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.manifest import TextEncoder, TextPreprocess
from service.modalities.spec import Item, ModalitySpec, PartNames, as_tuples
from service.preprocess.padding import pad_stack
from service.preprocess.text import decode_text, encode_text

WARMUP_TEXT = "warm up"


class TextModality(ModalitySpec):
    name = "text"
    parts = PartNames(v1="text", v2="text", openai="text")
    encoded_file = False
    encoder_class = TextEncoder
    preprocess_class = TextPreprocess
    limit_setting = "max_text_chars"
    budget_setting = "text_token_budget"

    def decode(self, value, preprocess: TextPreprocess, settings, field: str, tokenizer=None) -> Item:
        text = decode_text(value, max_chars=self.limit(preprocess, settings), field=field)
        return encode_text(text, tokenizer, preprocess, field=field)

    def collate(self, items: Sequence[Item], pad_multiple: int = 1) -> tuple[np.ndarray, ...]:
        tuples = as_tuples(items)
        longest = max(item[0].shape[-1] for item in tuples)
        ids = pad_stack([item[0] for item in tuples], longest)  # [B,L]
        mask = pad_stack([item[1] for item in tuples], longest)  # [B,L]
        return ids, mask

    def item_length(self, item: Item, preprocess: TextPreprocess) -> int:
        return len(item[0])  # tokens

    def warmup_input(self, preprocess: TextPreprocess, length: int | None, tokenizer=None) -> Item:
        ids = np.asarray(tokenizer.encode(WARMUP_TEXT).ids, np.int64)
        ids = ids if length is None else np.resize(ids, length)
        return ids, np.ones_like(ids)

    def longest_length(self, preprocess: TextPreprocess, settings) -> int:
        return preprocess.max_length  # longer texts are cut (or refused)


TEXT = TextModality()
