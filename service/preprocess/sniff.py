"""What to answer for bytes that are not an accepted media format (shared by image and audio)."""

from __future__ import annotations

from service.errors import FusionError, InvalidInput, UnsupportedMediaType


def rejection(
    data: bytes, field: str, known: tuple[tuple[bytes, str], ...], iso_media: str, kind: str, accepted: str
) -> FusionError:
    """A recognised but unsupported format is 415; bytes that are no known format at all are 422.

    `known` maps magic prefixes to format names; `iso_media` names ISO-BMFF files (…ftyp…) of this kind.
    """
    detected = next((name for magic, name in known if data.startswith(magic)), None)
    if detected is None and data[4:8] == b"ftyp":
        detected = iso_media
    if detected is None:
        what = "empty" if not data else "not a recognisable file (corrupt or not media)"
        return InvalidInput(f"{field}: the upload is {what}; accepted: {accepted}", field)
    return UnsupportedMediaType(f"{field}: {detected} is not a supported {kind}; accepted: {accepted}", field)
