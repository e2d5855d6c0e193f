"""The server tokenises exactly as transformers does for a chosen text encoder: the ids and mask
service.preprocess computes from the directory's tokenizer.json equal those of AutoTokenizer loaded from the
same directory, for each family, with truncation at the bundle's limit."""

from __future__ import annotations

import numpy as np
import pytest
import transformers

from service.preprocess import encode_text, load_tokenizer
from tests.integration.test_text_encoders import tiny_encoder
from training.data.specs import default_preprocess

TEXTS = ["a red kite", "The GREEN cup!", "blue paint on a wall, " * 40, "unknownword here", "  café  ünïcode"]


@pytest.mark.parametrize("family", ["bert", "distilbert", "roberta", "mpnet", "xlm-roberta"])  # WordPiece, BPE, Unigram
def test_server_ids_and_mask_equal_autotokenizers(tmp_path, family):
    directory = tiny_encoder(tmp_path / family, family)
    specs = default_preprocess(str(directory))
    assert specs.text.max_length == 64  # the model has 64 positions: fewer than the default 128
    served = load_tokenizer(specs.tokenizer_path, specs.text)
    reference = transformers.PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
    for text in TEXTS:
        ids, mask = encode_text(text, served, specs.text)
        expected = reference(text, truncation=True, max_length=specs.text.max_length)
        np.testing.assert_array_equal(ids, expected["input_ids"])
        np.testing.assert_array_equal(mask, expected["attention_mask"])
