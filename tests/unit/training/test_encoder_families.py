"""`--finetune-last N` for every encoder family: the last N blocks and what follows them train, the
blocks before stay frozen, for Hugging Face text (BERT, DistilBERT), image (ViT, DINOv2, ConvNeXt, CLIP vision)
and Whisper encoders built offline from tiny configs."""

from __future__ import annotations

import pytest

from tests.integration.test_audio_encoders import tiny_whisper
from tests.integration.test_image_encoders import FAMILIES, tiny_vision_encoder
from tests.integration.test_text_encoders import tiny_encoder
from training.model.backbones import build_backbone


def frozen_and_tuned(backbone) -> tuple[bool, bool]:
    blocks = backbone.blocks()
    first_frozen = not any(p.requires_grad for p in blocks[0].parameters())
    last_tuned = all(p.requires_grad for p in blocks[-1].parameters())
    return first_frozen, last_tuned


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_text_families_tune_their_last_layers(tmp_path, family):
    directory = tiny_encoder(tmp_path / family, family)
    backbone = build_backbone("text", finetune_last=1, text=(str(directory), "mean"))
    assert frozen_and_tuned(backbone) == (True, True)
    assert build_backbone("text", text=(str(directory), "mean")).n_trainable() == 0  # frozen by default


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_image_families_tune_their_last_blocks_and_final_norm(tmp_path, family):
    directory = tiny_vision_encoder(tmp_path / family, family)
    backbone = build_backbone("image", finetune_last=1, image_feature="pooled", image_encoder=str(directory))
    assert frozen_and_tuned(backbone) == (True, True)
    assert backbone.tail() and all(p.requires_grad for m in backbone.tail() for p in m.parameters())


def test_a_whisper_directory_tunes_its_last_layers(tmp_path):
    backbone = build_backbone("audio", finetune_last=1, audio_encoder=str(tiny_whisper(tmp_path / "whisper")))
    assert frozen_and_tuned(backbone) == (True, True) and backbone.out_dim == 32
