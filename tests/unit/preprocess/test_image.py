"""Image decoding (docs/bad-input.md rows 5–6): sniffing, bombs, corrupt files, modes, EXIF, resize maths."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from service.errors import FusionError, InvalidInput
from service.manifest import ImagePreprocess
from service.preprocess import decode_image
from tests.unit.preprocess.image_helpers import (
    BLUE,
    GREEN,
    LIMIT,
    NEAREST,
    RAW,
    RED,
    WHITE,
    bands,
    channel_means,
    encode,
    solid,
)

# --- accepted formats and output contract -------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_accepted_formats_give_float32_chw(fmt):
    data = encode(solid((200, 30, 30), (40, 30)), fmt, **({"quality": 95} if fmt != "BMP" else {}))
    out = decode_image(data, ImagePreprocess(size=24), max_pixels=LIMIT)
    assert out.shape == (3, 24, 24) and out.dtype == np.float32 and out.flags.c_contiguous
    expected = (np.array([200, 30, 30]) - 127.0) / 128.0
    np.testing.assert_allclose(channel_means(out), expected, atol=3 / 128)  # lossy codecs


def test_normalisation_is_per_channel():
    spec = ImagePreprocess(size=4, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 8.0))
    out = decode_image(encode(solid((50, 100, 150)), "PNG"), spec, max_pixels=LIMIT)
    np.testing.assert_array_equal(out[:, 0, 0], [(50 - 10) / 2, (100 - 20) / 4, (150 - 30) / 8])
    assert np.all(out == out[:, :1, :1])


# --- sniffing: the bytes decide, never a name or content type ---------------------------------


@pytest.mark.parametrize(
    ("data", "status", "detected"),
    [
        (b"", 422, "empty"),
        (np.random.default_rng(0).bytes(2048), 422, "not a recognisable file"),
        (b"just some text, named cat.png by the client", 422, "not a recognisable file"),
        (encode(solid(RED), "GIF"), 415, "GIF"),
        (encode(solid(RED), "TIFF"), 415, "TIFF"),
        (encode(solid(RED), "TIFF", compression="tiff_lzw"), 415, "TIFF"),
        (b"%PDF-1.7\n...", 415, "PDF"),
    ],
)
def test_unaccepted_bytes_are_415_if_recognised_else_422(data, status, detected):
    # decode_image has no filename parameter: a GIF uploaded as "photo.png" is still a GIF.
    with pytest.raises(FusionError) as info:
        decode_image(data, RAW, max_pixels=LIMIT, field="photo")
    error = info.value
    assert (error.status, error.field) == (status, "photo")
    assert detected in error.message and "JPEG, PNG, WebP, BMP" in error.message


FULL_JPEG = encode(bands((64, 48), [RED, GREEN, BLUE]), "JPEG", quality=90)
TRUNCATED_JPEG = FULL_JPEG[: FULL_JPEG.index(b"\xff\xda") + 100]  # cut inside the entropy-coded scan


@pytest.mark.parametrize(
    "data",
    [
        TRUNCATED_JPEG,
        b"\xff\xd8\xff",  # JPEG magic only
        b"\xff\xd8\xff\xe0" + bytes(200),
        b"\x89PNG\r\n\x1a\n" + bytes(100),
        encode(solid(RED), "PNG")[:40],
        b"BM" + np.random.default_rng(1).bytes(300),
        b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(50),
    ],
)
def test_truncated_or_corrupt_bodies_behind_valid_magic_are_422(data):
    with pytest.raises(InvalidInput, match="truncated or corrupt") as info:
        decode_image(data, RAW, max_pixels=LIMIT)
    assert (info.value.status, info.value.field) == (422, "image")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP"])
def test_mangled_files_only_ever_raise_fusion_errors(fmt):
    good = encode(bands((48, 32), [RED, GREEN, BLUE]), fmt)
    rng = np.random.default_rng(42)
    for _ in range(40):
        data = bytearray(good)
        for pos in rng.integers(0, len(data), size=rng.integers(1, 8)):
            data[pos] = int(rng.integers(0, 256))
        cut = int(rng.integers(len(data) // 2, len(data) + 1))
        try:
            out = decode_image(bytes(data[:cut]), RAW, max_pixels=LIMIT)
        except FusionError as error:
            assert error.status in (413, 415, 422)
        else:
            assert out.shape == (3, 16, 16)


# --- modes → RGB ---------------------------------------------------------------------------------


def test_palette_png():
    image = bands((30, 30), [RED, GREEN, BLUE]).convert("P", palette=Image.Palette.ADAPTIVE, colors=3)
    out = decode_image(encode(image, "PNG"), ImagePreprocess(size=30, **NEAREST), max_pixels=LIMIT)
    np.testing.assert_array_equal(out[:, 0, 0], RED)
    np.testing.assert_array_equal(out[:, 0, 15], GREEN)
    np.testing.assert_array_equal(out[:, 0, 29], BLUE)


def test_palette_with_transparency_composites_on_white():
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.paste(1, (4, 0, 8, 8))  # right half: palette index 1 (red); left half index 0 (transparent black)
    out = decode_image(encode(image, "PNG", transparency=0), ImagePreprocess(size=8, **NEAREST), max_pixels=LIMIT)
    np.testing.assert_array_equal(out[:, 0, 0], WHITE)
    np.testing.assert_array_equal(out[:, 0, 7], RED)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_alpha_composites_on_white(fmt):
    pixels = np.zeros((8, 12, 4), dtype=np.uint8)  # black everywhere under the alpha
    pixels[:, 4:8, 3] = 255
    pixels[:, 8:, 3] = 128
    data = encode(Image.fromarray(pixels, "RGBA"), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    out = decode_image(data, ImagePreprocess(size=8, resize="stretch", **NEAREST), max_pixels=LIMIT)
    assert out[:, :, 0].tolist() == [[255.0] * 8] * 3  # alpha 0 → background
    assert out[:, :, 4].tolist() == [[0.0] * 8] * 3  # opaque black stays black
    np.testing.assert_allclose(out[:, :, 7], 127, atol=1)  # half alpha: halfway to white


def test_la_grey_with_alpha():
    image = Image.new("LA", (8, 8), (0, 0))
    image.paste((100, 255), (4, 0, 8, 8))
    out = decode_image(encode(image, "PNG"), ImagePreprocess(size=8, **NEAREST), max_pixels=LIMIT)
    np.testing.assert_array_equal(out[:, 0, 0], WHITE)
    np.testing.assert_array_equal(out[:, 0, 7], (100, 100, 100))


def test_cmyk_jpeg():
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=100)  # red in CMYK
    out = decode_image(data, RAW, max_pixels=LIMIT)
    np.testing.assert_allclose(channel_means(out), RED, atol=4)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    pixels = np.zeros((8, 12), dtype=np.uint16)
    pixels[:, 4:8] = 257 * 128
    pixels[:, 8:] = 65535
    image = Image.fromarray(pixels)
    assert image.mode.startswith("I")
    out = decode_image(encode(image, "PNG"), ImagePreprocess(size=8, resize="stretch", **NEAREST), max_pixels=LIMIT)
    assert out[:, 0, 0].tolist() == [0, 0, 0]
    assert out[:, 0, 4].tolist() == [128, 128, 128]
    assert out[:, 0, 7].tolist() == [255, 255, 255]


@pytest.mark.parametrize(("mode", "color", "rgb"), [("L", 77, (77, 77, 77)), ("1", 1, WHITE)])
def test_grey_and_bilevel(mode, color, rgb):
    out = decode_image(encode(solid(color, mode=mode), "BMP"), RAW, max_pixels=LIMIT)
    np.testing.assert_array_equal(channel_means(out), rgb)


# --- EXIF orientation -----------------------------------------------------------------------------


@pytest.mark.parametrize(("orientation", "first", "last"), [(1, RED, BLUE), (3, BLUE, RED), (6, RED, BLUE)])
def test_exif_orientation_is_applied(orientation, first, last):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(bands((40, 20), [RED, BLUE]), "JPEG", quality=95, exif=exif)
    out = decode_image(data, ImagePreprocess(size=16, resize="stretch", **NEAREST), max_pixels=LIMIT)
    if orientation == 6:  # 90° clockwise: the left half becomes the top half
        first_half, last_half = out[:, :6, :], out[:, 10:, :]
    else:
        first_half, last_half = out[:, :, :6], out[:, :, 10:]
    np.testing.assert_allclose(channel_means(first_half), first, atol=12)
    np.testing.assert_allclose(channel_means(last_half), last, atol=12)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_broken_exif_does_not_escape():
    data = encode(solid(RED, (16, 16)), "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    try:
        out = decode_image(data, RAW, max_pixels=LIMIT)
    except FusionError as error:
        assert error.status == 422
    else:
        assert out.shape == (3, 16, 16)


# --- resize: centre crop vs stretch ---------------------------------------------------------------


@pytest.mark.parametrize("vertical", [True, False])  # landscape and portrait
def test_center_crop_keeps_the_middle(vertical):
    size = (300, 100) if vertical else (100, 300)
    data = encode(bands(size, [RED, GREEN, BLUE], vertical=vertical), "PNG")
    out = decode_image(data, ImagePreprocess(size=30, resize="center_crop", **NEAREST), max_pixels=LIMIT)
    assert out.shape == (3, 30, 30)
    assert np.all(out == np.array(GREEN, dtype=np.float32)[:, None, None])


def test_stretch_keeps_everything():
    data = encode(bands((300, 100), [RED, GREEN, BLUE]), "PNG")
    out = decode_image(data, ImagePreprocess(size=30, resize="stretch", **NEAREST), max_pixels=LIMIT)
    expected = np.zeros((3, 30, 30), dtype=np.float32)
    for i, color in enumerate([RED, GREEN, BLUE]):
        expected[:, :, i * 10 : (i + 1) * 10] = np.array(color)[:, None, None]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("resample", "mode"), [("bilinear", Image.Resampling.BILINEAR), ("bicubic", Image.Resampling.BICUBIC)]
)
def test_center_crop_arithmetic(resample, mode):
    """Shorter side → S (longer side rounded), then the (new - S) // 2 offset; pinned for the trainer."""
    pixels = np.random.default_rng(3).integers(0, 256, (41, 67, 3), dtype=np.uint8)
    spec = ImagePreprocess(size=20, resample=resample, mean=(1.0, 2.0, 3.0), std=(2.0, 2.0, 2.0))
    out = decode_image(encode(Image.fromarray(pixels), "PNG"), spec, max_pixels=LIMIT)
    resized = Image.fromarray(pixels).resize((33, 20), mode)  # 67 * 20 / 41 = 32.7 → 33
    expected = (np.asarray(resized, dtype=np.float32)[:, 6:26] - [1.0, 2.0, 3.0]) / 2.0
    np.testing.assert_array_equal(out, expected.transpose(2, 0, 1))


def test_small_images_are_upscaled():
    out = decode_image(encode(solid(BLUE, (5, 3)), "PNG"), ImagePreprocess(size=32, **NEAREST), max_pixels=LIMIT)
    assert out.shape == (3, 32, 32) and np.all(out == np.array(BLUE, dtype=np.float32)[:, None, None])
