"""Bring your own image encoder: a Hugging Face directory named by `--image-encoder` — here a tiny
random-initialised ViT, DINOv2, ConvNeXt or CLIP vision tower built offline from its config, saved with its image
processor — is trained on a small image dataset, exported, and answered over HTTP equal to torch within 1e-4,
the processor's preprocessing in the bundle."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from PIL import Image

from tests.integration.labelled_media import assert_served_like_torch, write_media_dataset
from tests.integration.test_text_encoders import cli

pytestmark = pytest.mark.slow
COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}

FAMILIES = {
    "vit": (lambda: transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=2, intermediate_size=64),
            lambda: transformers.ViTImageProcessor(size={"height": 32, "width": 32}), "cls"),
    "dinov2": (lambda: transformers.Dinov2Config(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, mlp_ratio=2),
               lambda: transformers.BitImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32},
                                                      resample=3, do_convert_rgb=True), "pooled"),
    "convnext": (lambda: transformers.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1]),
                 lambda: transformers.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875), "pooled"),
    "clip": (lambda: transformers.CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                                                   num_hidden_layers=2, num_attention_heads=2),
             lambda: transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
             "pooled"),
}  # fmt: skip


def picture(colour: tuple[int, int, int], seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    size = (int(rng.integers(40, 90)), int(rng.integers(40, 90)), 3)
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, size), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_images(root: Path) -> Path:
    return write_media_dataset(root, "image", COLOURS, picture, ".png")


def tiny_vision_encoder(directory: Path, family: str) -> Path:
    config, processor, _ = FAMILIES[family]
    torch.manual_seed(0)
    transformers.AutoModel.from_config(config()).save_pretrained(directory)
    processor().save_pretrained(directory)
    return directory


@pytest.mark.parametrize("family", sorted(FAMILIES))
async def test_a_chosen_image_encoder_trains_exports_and_serves_as_torch(tmp_path, monkeypatch, family):
    monkeypatch.chdir(tmp_path)
    encoder = tiny_vision_encoder(tmp_path / f"tiny-{family}", family)
    dataset = write_images(tmp_path / "colours")
    given = ("--data", str(dataset), "--name", "swatches", "--image-encoder", str(encoder),
             "--image-feature", FAMILIES[family][2])  # fmt: skip
    assert cli("train", *given) == 0
    assert cli("evaluate", *given, "--compare-fusions", "false") == 0
    quantize = ("--quantize", "int8") if family == "vit" else ()  # one family: the int8 sibling of an HF image model
    assert cli("export", *given, *quantize) == 0
    images = [picture(COLOURS["red"], 901), picture(COLOURS["blue"], 902), picture(COLOURS["green"], 903)]
    await assert_served_like_torch(tmp_path, "swatches", "image", images)
    if quantize:
        manifest = json.loads((tmp_path / "models" / "swatches-int8" / "1" / "manifest.json").read_text())
        comparison = manifest["metrics"]["int8_vs_fp32"]
        assert comparison["quantized"] == ["image"]
        assert comparison["int8"]["image"]["accuracy"] == comparison["fp32"]["image"]["accuracy"]  # kept
