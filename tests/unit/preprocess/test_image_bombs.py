"""Decompression bombs: rejected from the header, before any pixel is decoded (docs/bad-input.md row 6)."""

from __future__ import annotations

import resource
import time
import warnings

import pytest
from PIL import Image, ImageFile, WebPImagePlugin

from service.errors import PayloadTooLarge
from service.preprocess import decode_image
from tests.unit.preprocess.image_helpers import (
    RAW,
    RED,
    bmp_declaring,
    encode,
    jpeg_declaring,
    png_declaring,
    solid,
    webp_declaring,
)

# --- decompression bombs: rejected from the header, before any pixel is decoded ----------------


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    """Make any decode attempt fail (it would surface as a 422 instead of the expected 413)."""

    def forbidden(*args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", forbidden)
    # libwebp's decoder allocates the canvas when created, inside Image.open: it must not be reached.
    monkeypatch.setattr(WebPImagePlugin._webp, "WebPAnimDecoder", forbidden)


@pytest.mark.usefixtures("no_pixel_decoding")
@pytest.mark.parametrize(
    ("declaring", "size"),
    [
        (png_declaring, (30_000, 30_000)),  # above Pillow's own hard limit too
        (png_declaring, (5_000, 5_000)),  # below Pillow's limits: only ours stops it
        (png_declaring, (2_001, 1_000)),  # one row over
        (webp_declaring, (6_000, 6_000)),
        (jpeg_declaring, (6_000, 6_000)),
        (bmp_declaring, (6_000, 6_000)),
    ],
)
def test_bomb_rejected_before_decoding(declaring, size):
    data = declaring(*size)
    assert len(data) < 200
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(PayloadTooLarge) as info:
        decode_image(data, RAW, max_pixels=2_000_000)
    assert time.perf_counter() - started < 0.1
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mib < 20  # a decoded 30k x 30k RGB image would be 2.5 GiB
    assert (info.value.status, info.value.field) == (413, "image")
    assert "2000000 pixels" in info.value.message


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("PNG", {"optimize": True}),
        ("WEBP", {"lossless": True, "method": 0}),
        ("WEBP", {"quality": 10, "method": 0}),
        ("JPEG", {}),
    ],
)
def test_real_highly_compressed_bomb_is_rejected(fmt, params, no_pixel_decoding):
    data = encode(Image.new("RGB", (3_000, 1_000)), fmt, **params)  # 3 Mpx of black, tiny file
    assert len(data) < 100_000
    with pytest.raises(PayloadTooLarge, match="limit is 1000000 pixels"):
        decode_image(data, RAW, max_pixels=1_000_000)


def test_pillows_own_bomb_guards_are_413_too():
    # Our limit above Pillow's: its hard limit (2 x MAX_IMAGE_PIXELS) fires inside Image.open …
    with pytest.raises(PayloadTooLarge, match="limit is 10000000000 pixels"):
        decode_image(png_declaring(30_000, 30_000), RAW, max_pixels=10_000_000_000)
    # … and so does its warning (above MAX_IMAGE_PIXELS) when a -W error filter escalates it.
    with warnings.catch_warnings(), pytest.raises(PayloadTooLarge):
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        decode_image(png_declaring(10_000, 9_000), RAW, max_pixels=10_000_000_000)


def test_image_exactly_at_the_limit_is_accepted():
    out = decode_image(encode(solid(RED, (50, 40)), "PNG"), RAW, max_pixels=2_000)
    assert out.shape == (3, 16, 16)
