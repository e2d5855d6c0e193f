"""Text → token ids (docs/bad-input.md row 9), with the bundle's own `tokenizers` tokenizer (no transformers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from service.errors import BundleError, InvalidInput
from service.manifest import TextPreprocess

# UTF-8 needs at most 4 bytes per character, so longer byte strings cannot fit max_chars.
_MAX_UTF8_BYTES_PER_CHAR = 4


def load_tokenizer(path: Path, spec: TextPreprocess) -> Tokenizer:
    """Load tokenizer.json and configure it for the spec: truncation to max_length if allowed, no padding."""
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises a bare Exception on unreadable / invalid JSON
        raise BundleError(f"cannot load tokenizer {path}: {exc}") from exc
    tokenizer.no_padding()  # the batcher pads, so each item's length is its own
    if spec.truncate:
        tokenizer.enable_truncation(max_length=spec.max_length)
    else:
        # Keep the full length so encode_text can reject (422) instead of silently cutting.
        tokenizer.no_truncation()
    return tokenizer


def decode_text(raw: bytes | str, *, max_chars: int, field: str = "text") -> str:
    """Validate user text: strict UTF-8, no NUL, not blank, at most max_chars characters."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = bytes(raw)
        if len(raw) > max_chars * _MAX_UTF8_BYTES_PER_CHAR:
            raise InvalidInput(f"{field} is longer than the limit of {max_chars} characters", field)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{field} is not valid UTF-8 (bad byte at offset {exc.start})", field) from exc
    elif isinstance(raw, str):
        text = raw
        try:
            # A str from JSON may hold lone surrogates ("\ud800"), which the tokenizer cannot take.
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(f"{field} contains invalid Unicode at offset {exc.start}", field) from exc
    else:
        raise InvalidInput(f"{field} must be a string", field)
    if "\x00" in text:
        raise InvalidInput(f"{field} contains a NUL character", field)
    if len(text) > max_chars:
        raise InvalidInput(f"{field} has {len(text)} characters; the limit is {max_chars} characters", field)
    if not text.strip():
        raise InvalidInput(f"{field} is empty", field)
    return text


def encode_text(
    text: str, tokenizer: Tokenizer, spec: TextPreprocess, *, field: str = "text"
) -> tuple[np.ndarray, np.ndarray]:
    """Tokenise with special tokens → (input_ids, attention_mask), int64 [L], L <= spec.max_length.

    `tokenizer` must come from load_tokenizer(path, spec): truncation is the tokenizer's job, so the
    special tokens ([SEP], </s>) survive it.
    """
    encoding = tokenizer.encode(text, add_special_tokens=True)
    length = len(encoding.ids)
    if not spec.truncate and (length > spec.max_length or encoding.overflowing):
        counted = "" if encoding.overflowing else f" ({length} tokens)"
        raise InvalidInput(f"{field} is longer than the limit of {spec.max_length} tokens{counted}", field)
    if length > spec.max_length:
        raise ValueError(f"tokenizer not configured by load_tokenizer: {length} > {spec.max_length} tokens")
    ids = np.asarray(encoding.ids, dtype=np.int64)
    mask = np.asarray(encoding.attention_mask, dtype=np.int64)
    return ids, mask
