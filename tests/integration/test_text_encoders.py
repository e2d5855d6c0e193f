"""Bring your own text encoder: a Hugging Face directory named by `--text-encoder`, here a tiny
random-initialised model of each family built offline from its config with its kind of tokenizer.json (WordPiece,
byte-level BPE, Unigram), is
trained on a small text dataset, exported, and answered over HTTP equal to torch within 1e-4; a directory the
server could not reproduce is refused before anything trains."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.integration.labelled_media import assert_served_like_torch
from tests.integration.test_training_lifecycle import COLOURS, TEMPLATES, write_dataset

pytestmark = pytest.mark.slow
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
WORDS = sorted({w for t in TEMPLATES for w in t.replace("{}", " ").split()} | set(COLOURS) | {"stone", "the"})


def write_tokenizer(directory: Path) -> int:
    """A lower-casing WordPiece tokenizer over the dataset's words, [CLS] … [SEP] around each text."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tokenizer.save(str(directory / "tokenizer.json"))
    return len(vocab)


def write_sentencepiece_style(directory: Path, family: str) -> int:
    """RoBERTa's byte-level BPE (<s> … </s>, pad 1; here also for MPNet) or XLM-R's and CamemBERT's Unigram
    with a metaspace, trained on the dataset's words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    special = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3, as both families number them
    if family in ("roberta", "mpnet"):
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=special,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
        tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    else:
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer, tokenizer.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=120, special_tokens=special, unk_token="<unk>")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
        )
    tokenizer.train_from_iterator([" ".join(WORDS)] * 4 + [t.format(c) for t in TEMPLATES for c in COLOURS], trainer)
    tokenizer.save(str(directory / "tokenizer.json"))
    return tokenizer.get_vocab_size()


def tiny_encoder(directory: Path, family: str) -> Path:
    """A 2-layer, 32-wide model of `family`, random weights (seed 0), saved with its tokenizer; 64 positions."""
    import transformers

    directory.mkdir(parents=True)
    size = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    if family in ("bert", "electra"):
        config_class = transformers.BertConfig if family == "bert" else transformers.ElectraConfig
        config = config_class(vocab_size=write_tokenizer(directory), max_position_embeddings=64, **size)
    elif family == "distilbert":
        config = transformers.DistilBertConfig(vocab_size=write_tokenizer(directory), dim=32, n_layers=2, n_heads=2,
                                               hidden_dim=64, max_position_embeddings=64)  # fmt: skip
    else:  # positions start after the padding index: 66 hold 64 tokens
        configs = {"roberta": transformers.RobertaConfig, "xlm-roberta": transformers.XLMRobertaConfig,
                   "camembert": transformers.CamembertConfig, "mpnet": transformers.MPNetConfig}  # fmt: skip
        config = configs[family](vocab_size=write_sentencepiece_style(directory, family), max_position_embeddings=66,
                              pad_token_id=1, bos_token_id=0, eos_token_id=2, **size)  # fmt: skip
    torch.manual_seed(0)
    transformers.AutoModel.from_config(config).save_pretrained(directory)
    return directory


def cli(*argv: str) -> int:
    from training.__main__ import main

    return main([*argv, "--config", "default", "--cache-dir", ".cache", "--progress", "false", "--epochs", "10"])


TEXT_FAMILIES = {
    "bert": "cls",
    "distilbert": "mean",
    "roberta": "mean",
    "xlm-roberta": "cls",
    "camembert": "mean",
    "mpnet": "mean",
    "electra": "cls",
}  # every supported family, with a pooling each


@pytest.mark.parametrize(("family", "pooling"), TEXT_FAMILIES.items())
async def test_a_chosen_text_encoder_trains_exports_and_serves_as_torch(tmp_path, monkeypatch, family, pooling):
    monkeypatch.chdir(tmp_path)  # runs/, models/ and .cache/ are relative to the working directory
    encoder = tiny_encoder(tmp_path / f"tiny-{family}", family)
    write_dataset(tmp_path / "colours" / "dataset.jsonl", {c: c for c in COLOURS})
    given = ("--data", "colours/dataset.jsonl", "--name", "colours", "--text-encoder", str(encoder),
             "--text-pooling", pooling)  # fmt: skip
    assert cli("train", *given) == 0
    assert cli("evaluate", *given, "--compare-fusions", "false") == 0
    (tmp_path / "notes.md").write_text("## Notes\n\nMeasured on colours.\n")
    assert cli("export", *given, "--card-notes", "notes.md") == 0
    phrases = [b"a red kite", b"the green cup", b"blue paint on a wall"]
    await assert_served_like_torch(tmp_path, "colours", "text", phrases)
    card = (tmp_path / "models" / "colours" / "1" / "model_card.md").read_text()
    assert f"| text | {family} model | `{encoder}` | its own |" in card  # the chosen encoder, not MiniLM
    assert "MiniLM" not in card and card.rstrip().endswith("Measured on colours.")


def test_an_encoder_the_server_cannot_reproduce_is_refused_before_training(tmp_path, capsys):
    slow = tiny_encoder(tmp_path / "no-fast-tokenizer", "bert")
    os.remove(slow / "tokenizer.json")
    write_dataset(tmp_path / "colours" / "dataset.jsonl", {c: c for c in COLOURS})
    code = cli("train", "--data", str(tmp_path / "colours" / "dataset.jsonl"), "--text-encoder", str(slow),
               "--out-dir", str(tmp_path / "run"))  # fmt: skip
    assert code == 2
    assert "has no tokenizer.json; the server reproduces fast tokenizers only" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
