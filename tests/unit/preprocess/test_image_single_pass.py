"""ImagePreprocess.single_pass (docs/design-choices.md, "Cheaper image preprocessing"): a JPEG decoded at a reduced
DCT scale, crop and resize in one pass — close to the two-step path, EXIF still applied — and the one-pass
normalisation, bit-identical to the float32 formula every bundle was checked with."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from service.manifest import ImagePreprocess
from service.preprocess import decode_image
from tests.unit.preprocess.image_helpers import BLUE, GREEN, LIMIT, NEAREST, RED, bands, channel_means, encode


def photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Smooth colour fields with mild noise: a photo's spectrum, so downscaling filters can be compared."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) / max(size)
    rng = np.random.default_rng(seed)
    channels = [128 + 90 * np.sin(rng.uniform(2, 8) * x + rng.uniform(2, 8) * y + rng.uniform(0, 6)) for _ in range(3)]
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 3, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.mark.parametrize(("fmt", "size"), [("JPEG", (640, 480)), ("JPEG", (480, 1000)), ("PNG", (331, 517))])
def test_single_pass_answers_as_the_two_step_path_within_interpolation_noise(fmt, size):
    data = encode(photo(size), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    spec = ImagePreprocess(size=224, mean=(127.0,) * 3, std=(128.0,) * 3)
    two_step = decode_image(data, spec, max_pixels=LIMIT)
    one = decode_image(data, spec.model_copy(update={"single_pass": True}), max_pixels=LIMIT)
    assert one.shape == two_step.shape == (3, 224, 224) and one.dtype == np.float32 and one.flags["C_CONTIGUOUS"]
    assert np.abs(one - two_step).mean() < 0.01  # normalised units: under 1.3 grey levels on average


@pytest.mark.parametrize(("size", "decoded"), [((2000, 1500), (500, 375)), ((640, 480), (320, 240)),
                                               ((300, 240), (300, 240))])  # fmt: skip
def test_a_jpeg_decodes_at_the_smallest_scale_that_keeps_the_output_size(size, decoded):
    from service.preprocess.image import _draft, _open_checked

    spec = ImagePreprocess(size=224, single_pass=True)
    image = _open_checked(encode(photo(size), "JPEG"), "JPEG", LIMIT, "image")
    _draft(image, spec)
    image.load()
    assert image.size == decoded and min(image.size) >= 224


def test_single_pass_keeps_exif_orientation_and_the_middle():
    exif = Image.Exif()
    exif[0x0112] = 6  # 90° clockwise: the left band becomes the top band
    data = encode(bands((900, 450), [RED, GREEN, BLUE]), "JPEG", quality=95, exif=exif)
    out = decode_image(data, ImagePreprocess(size=32, single_pass=True, **NEAREST), max_pixels=LIMIT)
    np.testing.assert_allclose(channel_means(out[:, 12:20, 12:20]), GREEN, atol=12)  # the middle band, rotated


def test_normalisation_is_the_float32_formula_bit_for_bit():
    pixels = np.random.default_rng(5).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    spec = ImagePreprocess(size=24, resize="stretch", mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
    out = decode_image(encode(Image.fromarray(pixels), "PNG"), spec, max_pixels=LIMIT)
    expected = (pixels.astype(np.float32) - np.float32(spec.mean)) / np.float32(spec.std)
    np.testing.assert_array_equal(out, expected.transpose(2, 0, 1))
