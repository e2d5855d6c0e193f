"""Image bytes → normalised float32 CHW array, or uint8 pixels for an encoder that normalises itself
(docs/bad-input.md rows 5–6).

Order matters for safety: sniff the container from magic bytes, read only the header, check the
pixel count, and only then let Pillow decode pixels. Every failure is a FusionError.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageOps

from service.errors import FusionError, InvalidInput, PayloadTooLarge
from service.manifest import ImagePreprocess
from service.preprocess.sniff import rejection

ACCEPTED_IMAGE_FORMATS = ("JPEG", "PNG", "WebP", "BMP")
_ACCEPTED = ", ".join(ACCEPTED_IMAGE_FORMATS)

# Pillow plugin name per sniffed format; Image.open is restricted to it so no other parser runs.
_PILLOW_FORMAT = {"JPEG": "JPEG", "PNG": "PNG", "WebP": "WEBP", "BMP": "BMP"}

# Recognised only to give a precise 415 message.
_UNSUPPORTED_MAGIC = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
)

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}

# Transparent pixels are composited onto white: what a viewer shows, and it hides whatever
# arbitrary colour an encoder left under alpha = 0 (often black), which plain RGB conversion exposes.
_BACKGROUND = (255, 255, 255, 255)
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


def sniff_image_format(data: bytes) -> str | None:
    """The accepted format named by the magic bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:2] == b"BM":
        return "BMP"
    return None


def _unsupported(data: bytes, field: str) -> FusionError:
    return rejection(data, field, _UNSUPPORTED_MAGIC, "HEIF/AVIF", "image", _ACCEPTED)


def _webp_canvas_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a WebP header (VP8 / VP8L / VP8X), as Pillow's plugin reads them."""
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a" and len(data) >= 30:
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _check_pixels(width: int, height: int, max_pixels: int, field: str) -> None:
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"{field} is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels", field
        )


def _open_checked(data: bytes, fmt: str, max_pixels: int, field: str) -> Image.Image:
    """Open lazily (header only) and enforce the pixel limit before any pixel is decoded."""
    if fmt == "WebP" and (size := _webp_canvas_size(data)):
        # Pillow's WebP plugin creates libwebp's decoder, which allocates the whole canvas, inside
        # Image.open (guarded only by Pillow's own 179 Mpx limit), so check the header first.
        _check_pixels(*size, max_pixels, field)
    image = Image.open(io.BytesIO(data), formats=[_PILLOW_FORMAT[fmt]])
    width, height = image.size
    _check_pixels(width, height, max_pixels, field)
    if width < 1 or height < 1:
        raise InvalidInput(f"{field} has no pixels ({width}x{height})", field)
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any decoded mode → 8-bit RGB (palette, L, LA, CMYK, 16-bit grey, alpha)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own I;16 → RGB conversion clips at 255 instead of scaling; scale 0..65535 → 0..255.
        grey = np.clip(np.rint(np.asarray(image, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _draft(image: Image.Image, spec: ImagePreprocess) -> None:
    """Let a JPEG decode at a reduced DCT scale that still leaves at least the output size (no-op otherwise)."""
    width, height = image.size
    if spec.resize == "stretch":
        image.draft(None, (spec.size, spec.size))
        return
    shorter = min(width, height)
    image.draft(None, (math.ceil(spec.size * width / shorter), math.ceil(spec.size * height / shorter)))


def _resize(image: Image.Image, spec: ImagePreprocess) -> Image.Image:
    size, resample = spec.size, _RESAMPLE[spec.resample]
    if spec.resize == "stretch":
        return image.resize((size, size), resample)
    width, height = image.size
    if spec.resize == "shortest_edge":  # transformers' get_resize_output_image_size and center_crop
        short = spec.resize_size or size
        new_w, new_h = (short, int(short * height / width)) if width <= height else (int(short * width / height), short)
        image = image.resize((new_w, new_h), resample)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        return image.crop((left, top, left + size, top + size))
    if spec.single_pass:  # the centred square of the source, straight to size x size
        side = min(width, height)
        box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
        return image.resize((size, size), resample, box=box)
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), resample)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def _normalise(image: Image.Image, spec: ImagePreprocess) -> np.ndarray:
    # uint8 [S,S,3] → float32 [3,S,S] in one pass into a C-contiguous array: the same float32 maths as
    # (float(p) - mean) / std, a tenth of the time of converting first and transposing after
    chw = np.asarray(image).transpose(2, 0, 1)
    out = np.empty(chw.shape, np.float32)
    np.subtract(chw, np.asarray(spec.mean, np.float32)[:, None, None], out=out, dtype=np.float32)
    out /= np.asarray(spec.std, np.float32)[:, None, None]
    return out


def preprocess_image(image: Image.Image, spec: ImagePreprocess) -> np.ndarray:
    """A decoded, upright picture → the encoder's input, as decode_image makes it after decoding: 8-bit RGB,
    resized per spec, float32 [3, S, S] normalised (spec.normalise "graph": uint8 [3, S, S]). Video frames
    come through here too, so a frame and a photo of the same picture give the encoder the same input."""
    image = _resize(_to_rgb(image), spec)
    if spec.normalise == "graph":  # the encoder normalises: hand it the pixels, a quarter of the bytes
        return np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1))
    return _normalise(image, spec)


def decode_image(data: bytes, spec: ImagePreprocess, *, max_pixels: int, field: str = "image") -> np.ndarray:
    """Encoded JPEG/PNG/WebP/BMP bytes → float32 [3, S, S], EXIF-oriented, resized, normalised (spec.single_pass:
    JPEGs decoded at a reduced scale, crop and resize in one pass; spec.normalise "graph": uint8 [3, S, S])."""
    fmt = sniff_image_format(data)
    if fmt is None:
        raise _unsupported(data, field)
    try:
        image = _open_checked(data, fmt, max_pixels, field)
        if spec.single_pass:
            _draft(image, spec)
        image.load()  # the first (and only) decode, after the size check
        ImageOps.exif_transpose(image, in_place=True)  # without an Orientation tag, a copy otherwise
        return preprocess_image(image, spec)
    except FusionError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError) as exc:
        # Pillow's own guard fired inside Image.open (over its 179 Mpx hard limit, or its warning
        # escalated by a -W error filter) before we saw the size; its text names its limit, not ours.
        raise PayloadTooLarge(f"{field} has too many pixels; the limit is {max_pixels} pixels", field) from exc
    except Exception as exc:  # untrusted bytes: Pillow raises OSError, SyntaxError, ValueError, struct.error…
        message = f"{field}: cannot decode {fmt} image (truncated or corrupt): {exc}"
        raise InvalidInput(message, field) from exc
