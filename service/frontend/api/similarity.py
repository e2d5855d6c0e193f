"""What `POST /v1/rerank` and `POST /v1/score` share (docs/rerank.md): the body's items (a string, an
`/v1/embeddings` content array, a Cohere document object), the cycle's Codec, and the scores — cosines of fused
embeddings in the joint space.

As `/v1/embeddings` (api/openai_embeddings.py): the body names the model, so it is parsed first; its options and
the shape and count of its items are checked before admission (404 / 429), its media decoded and fetched only
after it. Every item of a request — query and documents, or both sides of the pairs — goes to the backend in the
one `backend.run` call of the cycle, so documents share the per-modality batchers with every other request.
Errors answer in OpenAI's shape (openai_error), the param naming the field (`documents[2][1].image_url`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import InvalidInput, PayloadTooLarge
from service.frontend.api.infer import OrjsonResponse
from service.frontend.api.inputs import field_path
from service.frontend.api.openai_embeddings import JsonBodyCodec
from service.frontend.api.openai_inputs import PartsItem, content_item, text_item
from service.frontend.cycle import Admitted, Decoded, Inference
from service.frontend.fetch import Fetcher, Remote
from service.items import ItemResult, PreparedItem
from service.settings import Settings

LIMIT_ENV = "FUSIONSERVE_MAX_RERANK_DOCUMENTS"
SHAPES = "a string or a content array (a list of text / image_url / input_audio / video_url parts)"


class BodyOptions(BaseModel):
    """The options every such body takes: the model, and a video_url item's segmentation (as /v1/embeddings)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, description="a served model (bundle) name, or name:version")
    segment_s: float | None = Field(None, description="video: segment length in seconds (default: the model's)")
    overlap_s: float | None = Field(None, description="video: overlap of consecutive segments (default: the model's)")

    def video_options(self) -> dict:
        return {name: getattr(self, name) for name in ("segment_s", "overlap_s") if getattr(self, name) is not None}


@dataclass(frozen=True)
class Entry:
    """One item of the body, as sent, with the field that names it in errors."""

    where: str
    value: Any


def entries(value: object, field: str, settings: Settings, *, many: bool, documents: bool = False) -> list[Entry]:
    """`field`'s items, shape-checked (nothing decoded). `many`: a list of items, or (score's text_1 / text_2) one
    item; vLLM's `{"content": [parts]}` is one item per part. `documents`: a list, whose items may be Cohere's
    `{"text": ...}` objects too."""
    if isinstance(value, dict) and "content" in value and many:  # vLLM's multimodal param: one item per part
        parts = value["content"]
        if not isinstance(parts, list):
            raise InvalidInput(f"{field}.content must be a list of content parts", field=f"{field}.content")
        found = [Entry(f"{field}.content[{i}]", [part]) for i, part in enumerate(parts)]
    elif documents and not isinstance(value, list):
        raise InvalidInput(f"documents must be a list of documents, not {type(value).__name__}", field=field)
    elif not documents and (not many or isinstance(value, str) or _content_array(value)):
        found = [Entry(field, value)]  # one item: a string or a content array
    elif isinstance(value, list):
        found = [Entry(f"{field}[{i}]", element) for i, element in enumerate(value)]
    else:
        raise InvalidInput(f"{field} must be {SHAPES}, or a list of them", field=field)
    check_count(found, field, settings)
    for entry in found:
        check_shape(entry, documents)
    return found


def _content_array(value: object) -> bool:
    """A list of parts (one item), not a list of items: its first element is a part (an object)."""
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def check_count(found: list[Entry], field: str, settings: Settings) -> None:
    if not found:
        raise InvalidInput(f"{field} must hold at least one item", field=field)
    if len(found) > settings.max_rerank_documents:  # before any is decoded
        raise PayloadTooLarge(
            f"{field} has {len(found)} items; the limit is {settings.max_rerank_documents} ({LIMIT_ENV})", field=field
        )


def check_shape(entry: Entry, documents: bool) -> None:
    value, where = entry.value, entry.where
    if isinstance(value, str) or (isinstance(value, list) and value):
        return  # a content array's parts are validated as they are decoded, after admission
    if isinstance(value, list):
        raise InvalidInput(f"{where} is an empty content array; send at least one part", field=where)
    if documents and isinstance(value, dict):
        if isinstance(value.get("text"), str):
            return
        hint = " (a content part must be inside a list: a content array)" if "type" in value else ""
        raise InvalidInput(f"{where}.text: a document object needs a string `text`{hint}", field=f"{where}.text")
    kinds = SHAPES + (", or an object with a `text` string" if documents else "")
    raise InvalidInput(f"{where} must be {kinds}, not {type(value).__name__}", field=where)


def item_of(entry: Entry, settings: Settings, remotes: list[Remote], video_options: dict) -> PartsItem:
    """The entry as an item, its media decoded (after admission); image / video URLs of allowed hosts are added to
    `remotes`, to fetch."""
    value, where = entry.value, entry.where
    if isinstance(value, str):
        item = text_item(value, where)
    elif isinstance(value, dict):  # a Cohere document object: its text is ranked, its other fields only echoed
        item = text_item(value["text"], f"{where}.text")
    else:
        item = content_item(value, where, settings, remotes)
    item.options, item.options_prefix = dict(video_options), ""
    return item


def as_document(value: object) -> object:
    """A document as `return_documents` echoes it: a string as Cohere's {"text": ...}; an object or a content
    array as sent."""
    return {"text": value} if isinstance(value, str) else value


def unit_rows(results: list[ItemResult]) -> np.ndarray:
    """The items' fused embeddings [N, D] in float64, re-normalised there: they are unit norm in float32, so a
    document's cosine with itself would come out a hair over 1."""
    rows = np.stack([result.fused for result in results]).astype(np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def cosine(rows: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Each of `rows` with `row` (unit rows), within [-1, 1]."""
    return np.clip(rows @ row, -1.0, 1.0)


def text_tokens(items: list[PreparedItem]) -> int:
    """Text tokens as the model's tokenizer counts them, padding excluded (the attention mask's sum)."""
    return sum(int(item.arrays["text"][1].sum()) for item in items if "text" in item.arrays)


def parse_options(data: dict, model: type[BaseModel], content: tuple[str, ...]) -> Any:
    """The body less its `content` fields, validated by `model` (unknown fields are 422, naming them)."""
    for name in content:
        if name not in data:
            raise InvalidInput(f"{name}: Field required", field=name)
    try:
        return model.model_validate({key: value for key, value in data.items() if key not in content})
    except ValidationError as error:
        first = error.errors()[0]
        field = field_path(first["loc"]) or "body"
        raise InvalidInput(f"{field}: {first['msg']}", field=field) from None


class BodyCodec(JsonBodyCodec):
    """Rerank's and score's codec: a subclass gives `shape` (before admission: options and items, nothing decoded),
    `to_run` (what to run, in order) and `respond`."""

    def to_run(self) -> list[Entry]:
        raise NotImplementedError

    def respond(self, admitted: Admitted, done: Inference) -> dict:
        raise NotImplementedError

    async def decode(self, admitted: Admitted) -> Decoded:
        remotes: list[Remote] = []
        video = self.options.video_options()
        items = [item_of(entry, self.settings, remotes, video) for entry in self.to_run()]
        await Fetcher(self.settings, self.deadline.at).fetch_all(remotes)
        return Decoded(items, self.deadline.at)

    def encode(self, admitted: Admitted, done: Inference) -> Response:
        return OrjsonResponse(self.respond(admitted, done))
