"""The OpenAI embeddings `input` → RawItems: a string, a list of strings, or content arrays of parts.

A content array is one item: its text, image_url, input_audio and video_url parts are that item's modalities (at
most one part each), so a several-part item gets its fused embedding; a video_url part's item is answered per
segment too (the body's segment_s / overlap_s, openai_embeddings.py). Every error names the OpenAI param
(`input[2][1].image_url`), also when preprocessing fails later: PartsItem maps each modality to its part.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import InvalidInput, PayloadTooLarge
from service.frontend.api.inputs import decode_base64, field_path
from service.frontend.fetch import Remote, allowed_url
from service.items import RawItem
from service.modalities.registry import by_part
from service.settings import Settings

SHAPES = "a string, a list of strings, or a list of content arrays"


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="data:image/png;base64,... (JPEG, PNG, WebP, BMP); http(s) only for allowed hosts")
    detail: str | None = Field(None, description="accepted for compatibility with chat content parts; ignored")


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: str = Field(description="base64 audio file")
    format: Literal["wav", "flac", "ogg"] = Field(description="the file's format (the bytes are sniffed too)")


class AudioPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["input_audio"]
    input_audio: InputAudio


class VideoUrl(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="data:video/mp4;base64,... (MP4/MOV, WebM/MKV, AVI); http(s) only for allowed hosts")


class VideoPart(BaseModel):
    """Not OpenAI's (it has no video part): shaped as its image_url part, as vLLM's video_url."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["video_url"]
    video_url: VideoUrl


ContentPart = TextPart | ImagePart | AudioPart | VideoPart
SCHEMAS: dict[str, type[BaseModel]] = {
    "text": TextPart, "image_url": ImagePart, "input_audio": AudioPart, "video_url": VideoPart,
}  # fmt: skip
# content-part type → (its schema, the registered modality whose part it is), in OpenAI's order
PART_TYPES: dict[str, tuple[type[BaseModel], str]] = {
    kind: (schema, spec.name) for kind, schema in SCHEMAS.items() if (spec := by_part("openai", kind)) is not None
}


class PartsItem(RawItem):
    """A RawItem whose errors name the OpenAI param each modality came from (`input[0][1].image_url`)."""

    def __init__(self, params: dict[str, str] | None = None, **item):
        super().__init__(**item)
        self.params = params if params is not None else {}

    def field(self, modality: str) -> str:
        return self.params.get(modality) or super().field(modality)


@dataclasses.dataclass
class ParsedInput:
    items: list[PartsItem]
    remotes: list[Remote]  # image and video URLs of allow-listed hosts, still to fetch into their items


def parse_input(value: object, settings: Settings, options: dict | None = None) -> ParsedInput:
    """`options` (the body's segment_s / overlap_s) go on every item, named as the body's fields."""
    parsed = _parse(value, settings)
    for item in parsed.items:
        item.options, item.options_prefix = dict(options or {}), ""
    return parsed


def _parse(value: object, settings: Settings) -> ParsedInput:
    if isinstance(value, str):
        return ParsedInput([text_item(value, "input")], [])
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"input must be {SHAPES}, with at least one item", field="input")
    if len(value) > settings.max_items_per_request:  # before decoding any of them
        raise PayloadTooLarge(
            f"input has {len(value)} items; the limit is {settings.max_items_per_request} "
            "(FUSIONSERVE_MAX_ITEMS_PER_REQUEST)",
            field="input",
        )
    if any(isinstance(element, int) or _is_token_ids(element) for element in value):
        raise InvalidInput(
            f"input: token-id arrays are not accepted (fusionserve tokenizes text itself); send {SHAPES}",
            field="input",
        )
    parsed = ParsedInput([], [])
    for index, element in enumerate(value):
        where = f"input[{index}]"
        if isinstance(element, str):
            parsed.items.append(text_item(element, where))
        elif isinstance(element, list):
            parsed.items.append(content_item(element, where, settings, parsed.remotes))
        else:
            raise InvalidInput(f"{where} must be a string or a content array, not {type(element).__name__}", where)
    return parsed


def _is_token_ids(element: object) -> bool:
    return isinstance(element, list) and bool(element) and all(isinstance(token, int) for token in element)


def text_item(text: str, where: str) -> PartsItem:
    return PartsItem(text=text, prefix=where, params={"text": where})


def content_item(parts: list, where: str, settings: Settings, remotes: list[Remote]) -> PartsItem:
    if not parts:
        raise InvalidInput(f"{where} is an empty content array; send at least one part", field=where)
    item = PartsItem(prefix=where)
    for index, part in enumerate(parts):
        at = f"{where}[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in PART_TYPES:
            raise InvalidInput(
                f"{at}.type must be one of {', '.join(map(repr, PART_TYPES))} (got {kind!r})", field=f"{at}.type"
            )
        schema, modality = PART_TYPES[kind]
        try:
            validated = schema.model_validate(part)
        except ValidationError as error:
            first = error.errors()[0]
            field = field_path((at, *first["loc"]))
            raise InvalidInput(f"{field}: {first['msg']}", field=field) from None
        if modality in item.params:
            raise InvalidInput(
                f"{at}: a second {modality} part in {where} (the first is {item.params[modality]}); an item takes "
                f"at most one part per modality: send the other {modality} as another item",
                field=at,
            )
        _fill(item, validated, at, settings, remotes)
    return item


def _fill(item: PartsItem, part: BaseModel, at: str, settings: Settings, remotes: list[Remote]) -> None:
    if isinstance(part, TextPart):
        item.params["text"], item.text = f"{at}.text", part.text
    elif isinstance(part, AudioPart):
        field = item.params["audio"] = f"{at}.input_audio"
        item.audio = decode_base64(part.input_audio.data, field)
    else:  # an image_url or a video_url: inline as a data: URL, or fetched from an allowed host
        modality, kind = ("video", "video_url") if isinstance(part, VideoPart) else ("image", "image_url")
        field = item.params[modality] = f"{at}.{kind}"
        url = getattr(part, kind).url
        if url.startswith("data:"):
            item.set(modality, decode_base64(url, field))
        else:
            remotes.append(Remote(allowed_url(url, settings, field), field, item, modality))
