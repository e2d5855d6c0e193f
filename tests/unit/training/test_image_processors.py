"""The server reproduces Hugging Face image processors: each processor a supported image encoder
ships with, saved as its preprocessor_config.json, becomes an ImagePreprocess whose pixels equal the
transformers processor's within 1e-4 — on PNGs and JPEGs of several shapes; what it cannot reproduce is named."""

from __future__ import annotations

import io

import numpy as np
import pytest
import transformers
from PIL import Image

from service.preprocess import decode_image
from training.encoders import image_preprocess

PROCESSORS = {
    "vit": lambda: transformers.ViTImageProcessor(size={"height": 64, "width": 64}),
    "clip": lambda: transformers.CLIPImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}),
    "dinov2": lambda: transformers.BitImageProcessor(size={"shortest_edge": 72}, crop_size={"height": 64, "width": 64},
                                                     resample=3, image_mean=[0.485, 0.456, 0.406],
                                                     image_std=[0.229, 0.224, 0.225], do_convert_rgb=True),
    "convnext": lambda: transformers.ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=0.875),
}  # fmt: skip


def photo(width: int, height: int, fmt: str) -> tuple[bytes, Image.Image]:
    rng = np.random.default_rng(width * height)
    smooth = np.linspace(0, 255, width * height * 3).reshape(height, width, 3)
    pixels = np.clip(smooth + rng.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    data = buffer.getvalue()
    return data, Image.open(io.BytesIO(data)).convert("RGB")


@pytest.mark.parametrize("family", sorted(PROCESSORS))
@pytest.mark.parametrize(("width", "height", "fmt"), [(300, 200, "PNG"), (200, 333, "JPEG"), (97, 97, "PNG")])
def test_the_server_computes_the_processors_pixels(tmp_path, family, width, height, fmt):
    processor = PROCESSORS[family]()
    processor.save_pretrained(tmp_path)
    spec = image_preprocess(str(tmp_path))
    data, image = photo(width, height, fmt)
    expected = processor(images=image, return_tensors="np")["pixel_values"][0]  # [3,S,S]
    served = decode_image(data, spec, max_pixels=10**8)
    assert served.shape == expected.shape
    np.testing.assert_allclose(served, expected, atol=1e-4)


def test_what_the_server_cannot_reproduce_is_named(tmp_path):
    transformers.ViTImageProcessor(size={"height": 64, "width": 48}).save_pretrained(tmp_path / "oblong")
    with pytest.raises(ValueError, match="is not square"):
        image_preprocess(str(tmp_path / "oblong"))
    transformers.ViTImageProcessor(resample=1).save_pretrained(tmp_path / "lanczos")
    with pytest.raises(ValueError, match="resample 1 is not one of"):
        image_preprocess(str(tmp_path / "lanczos"))
    with pytest.raises(ValueError, match="no preprocessor_config.json"):
        image_preprocess(str(tmp_path))
