"""Text validation and tokenisation (docs/bad-input.md row 9), with a tiny offline WordLevel tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from service.errors import BundleError, InvalidInput
from service.manifest import TextPreprocess
from service.preprocess import decode_text, encode_text, load_tokenizer

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPECIALS = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3}
CLS, SEP, UNK = 1, 2, 0


def _build_tokenizer(padding: bool = False) -> Tokenizer:
    vocab = {**SPECIALS, **{word: 4 + i for i, word in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", CLS), ("[SEP]", SEP)]
    )
    if padding:  # a tokenizer.json saved with padding on: load_tokenizer must switch it off
        tokenizer.enable_padding(pad_id=3, pad_token="[PAD]", length=16)
    return tokenizer


@pytest.fixture
def tokenizer_path(tmp_path):
    path = tmp_path / "tokenizer.json"
    _build_tokenizer().save(str(path))
    return path


def _word_ids(*words: str) -> list[int]:
    return [4 + WORDS.index(word) for word in words]


# --- decode_text ------------------------------------------------------------------------------


def test_decode_text_accepts_str_and_utf8_bytes():
    assert decode_text("One two", max_chars=20) == "One two"
    assert decode_text("naïve café".encode(), max_chars=20) == "naïve café"
    assert decode_text(bytearray(b"three"), max_chars=20) == "three"


@pytest.mark.parametrize("raw", [b"\xff\xfe\xfd", b"ok \xc3\x28", b"\xed\xa0\x80"])  # bad byte, overlong, surrogate
def test_decode_text_rejects_invalid_utf8(raw):
    with pytest.raises(InvalidInput, match="UTF-8") as info:
        decode_text(raw, max_chars=100, field="hint")
    assert info.value.status == 422
    assert info.value.field == "hint"


def test_decode_text_rejects_lone_surrogate_in_str():
    with pytest.raises(InvalidInput, match="Unicode") as info:
        decode_text("bad \ud800 text", max_chars=100)
    assert info.value.field == "text"


@pytest.mark.parametrize("raw", ["a\x00b", b"a\x00b", "\x00"])
def test_decode_text_rejects_nul(raw):
    with pytest.raises(InvalidInput, match="NUL") as info:
        decode_text(raw, max_chars=100)
    assert (info.value.status, info.value.field) == (422, "text")


@pytest.mark.parametrize("raw", ["", b"", "   ", " \n\t\r ", b"  \n"])
def test_decode_text_rejects_empty_or_blank(raw):
    with pytest.raises(InvalidInput, match="empty") as info:
        decode_text(raw, max_chars=100)
    assert (info.value.status, info.value.field) == (422, "text")


def test_decode_text_length_limit_counts_characters_not_bytes():
    assert decode_text("é" * 10, max_chars=10) == "é" * 10  # 20 bytes, 10 characters
    assert decode_text(("é" * 10).encode(), max_chars=10) == "é" * 10
    with pytest.raises(InvalidInput, match="limit is 10 characters") as info:
        decode_text("x" * 11, max_chars=10, field="caption")
    assert (info.value.status, info.value.field) == (422, "caption")


def test_decode_text_rejects_huge_bytes_without_decoding():
    with pytest.raises(InvalidInput, match="limit of 10 characters"):
        decode_text(b"\xff" * 10_000, max_chars=10)  # too long wins over invalid: never decoded


def test_decode_text_rejects_non_text_type():
    with pytest.raises(InvalidInput, match="string"):
        decode_text(123, max_chars=10)  # type: ignore[arg-type]


# --- load_tokenizer / encode_text -------------------------------------------------------------


def test_encode_adds_special_tokens_and_returns_int64(tokenizer_path):
    spec = TextPreprocess(max_length=16)
    ids, mask = encode_text("One TWO", load_tokenizer(tokenizer_path, spec), spec)
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    assert ids.tolist() == [CLS, *_word_ids("one", "two"), SEP]
    assert mask.tolist() == [1, 1, 1, 1]


def test_encode_unknown_words_map_to_unk(tokenizer_path):
    spec = TextPreprocess(max_length=16)
    ids, _ = encode_text("one banana", load_tokenizer(tokenizer_path, spec), spec)
    assert ids.tolist() == [CLS, *_word_ids("one"), UNK, SEP]


def test_truncation_on_keeps_special_tokens(tokenizer_path):
    spec = TextPreprocess(max_length=4, truncate=True)
    ids, mask = encode_text("one two three four five", load_tokenizer(tokenizer_path, spec), spec)
    assert ids.tolist() == [CLS, *_word_ids("one", "two"), SEP]
    assert mask.tolist() == [1, 1, 1, 1]


def test_truncation_off_rejects_over_limit(tokenizer_path):
    spec = TextPreprocess(max_length=4, truncate=False)
    tokenizer = load_tokenizer(tokenizer_path, spec)
    ids, _ = encode_text("one two", tokenizer, spec)  # exactly at the limit: accepted
    assert len(ids) == 4
    with pytest.raises(InvalidInput, match="limit of 4 tokens") as info:
        encode_text("one two three", tokenizer, spec, field="caption")
    assert (info.value.status, info.value.field) == (422, "caption")
    assert "5 tokens" in info.value.message


def test_truncation_off_detects_a_tokenizer_that_truncated(tokenizer_path):
    truncating = load_tokenizer(tokenizer_path, TextPreprocess(max_length=4, truncate=True))
    with pytest.raises(InvalidInput, match="limit of 4 tokens"):
        encode_text("one two three", truncating, TextPreprocess(max_length=4, truncate=False))


def test_no_padding_even_if_saved_with_padding(tmp_path):
    path = tmp_path / "padded.json"
    _build_tokenizer(padding=True).save(str(path))
    spec = TextPreprocess(max_length=16)
    ids, mask = encode_text("one", load_tokenizer(path, spec), spec)
    assert len(ids) == len(mask) == 3


def test_load_tokenizer_failures_are_bundle_errors(tmp_path):
    with pytest.raises(BundleError, match="tokenizer"):
        load_tokenizer(tmp_path / "missing.json", TextPreprocess())
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(BundleError, match="tokenizer"):
        load_tokenizer(broken, TextPreprocess())


def test_decode_then_encode_round_trip(tokenizer_path):
    spec = TextPreprocess(max_length=8)
    text = decode_text(b"seven eight nine", max_chars=64)
    ids, _ = encode_text(text, load_tokenizer(tokenizer_path, spec), spec)
    assert ids.tolist() == [CLS, *_word_ids("seven", "eight", "nine"), SEP]
