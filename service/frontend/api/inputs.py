"""HTTP body → RawItem(s): multipart (one item) or JSON (a list of items), with every limit named."""

from __future__ import annotations

import binascii
import sys

import orjson
import pybase64
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from service.errors import BadRequest, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.items import RawItem
from service.modalities.registry import by_part, specs
from service.modalities.spec import ModalitySpec
from service.settings import Settings


def _part_list() -> str:
    return ", ".join(spec.parts.v1 for spec in specs())


ACCEPTED = f'multipart/form-data (fields {_part_list()}) or application/json ({{"inputs": [...]}})'


def _json_field(spec: ModalitySpec):
    if not spec.encoded_file:
        return str | None, None
    about = f"base64 {spec.name} file ({spec.description()}); data: URLs accepted"
    return str | None, Field(None, description=about)


def input_item_model() -> type[BaseModel]:
    """One item of a JSON request: any non-empty subset of the model's modalities, a field per registered one."""
    fields = {spec.parts.v1: _json_field(spec) for spec in specs()}
    return create_model("InputItem", __config__=ConfigDict(extra="forbid"), **fields)


InputItem = input_item_model()


class JsonRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: list[InputItem] = Field(min_length=1)


async def read_items(request: Request, settings: Settings) -> list[RawItem]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return [await read_multipart(request, settings)]
    if media == "application/json":
        return read_json(await request.body(), settings)
    raise UnsupportedMediaType(
        f"Content-Type {media or '(none)'} is not accepted; send {ACCEPTED}", field="content-type"
    )


class TooManyParts(MultiPartException):
    """More multipart parts (files and fields together) than FUSIONSERVE_MAX_FORM_PARTS."""


class FieldTooLarge(MultiPartException):
    """A non-file multipart field larger than FUSIONSERVE_MAX_FIELD_BYTES."""


class LimitedMultiPartParser(MultiPartParser):
    """Starlette's multipart parser with our two limits raising their own exception types, so the answer
    (400 naming the part limit, 413 naming the field limit) never depends on the wording of a message."""

    def __init__(self, request: Request, settings: Settings):
        unlimited = sys.maxsize  # Starlette's own counters never fire: ours below do, with types
        super().__init__(request.headers, request.stream(), max_files=unlimited, max_fields=unlimited,
                         max_part_size=unlimited)  # fmt: skip
        self.settings, self._parts = settings, 0

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > self.settings.max_form_parts:
            raise TooManyParts(f"more than {self.settings.max_form_parts} parts")
        super().on_part_begin()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._current_part
        if part.file is None and len(part.data) + (end - start) > self.settings.max_field_bytes:
            raise FieldTooLarge(f"field {part.field_name!r} over {self.settings.max_field_bytes} bytes")
        super().on_part_data(data, start, end)


def _form_error(error: Exception, settings: Settings) -> Exception:
    if isinstance(error, FieldTooLarge):
        return PayloadTooLarge(
            f"a form field exceeds {settings.max_field_bytes} bytes "
            "(FUSIONSERVE_MAX_FIELD_BYTES); send media as file parts",
            field="form",
        )
    if isinstance(error, TooManyParts):
        return BadRequest(
            f"too many form parts: the limit is {settings.max_form_parts} (FUSIONSERVE_MAX_FORM_PARTS)",
            field="form",
        )
    message = getattr(error, "detail", None) or getattr(error, "message", None) or str(error)
    return BadRequest(f"malformed multipart body: {message}", field="form")


async def read_multipart(request: Request, settings: Settings) -> RawItem:
    return (await read_multipart_form(request, settings))[0]


async def read_multipart_form(
    request: Request, settings: Settings, extra: frozenset[str] = frozenset()
) -> tuple[RawItem, dict[str, list[str]]]:
    """One item from the form's modality parts, and the plain fields named in `extra` (a request's own options,
    e.g. zero-shot's repeated `labels`), each as the list of its values in the order sent."""
    try:
        form = await LimitedMultiPartParser(request, settings).parse()
    except (MultiPartException, HTTPException) as error:
        raise _form_error(error, settings) from None
    item, extras = RawItem(), {}
    for name, value in form.multi_items():
        if name in extra:
            if not isinstance(value, str):
                raise InvalidInput(f"field {name!r} must be a plain form field, not a file part", field=name)
            extras.setdefault(name, []).append(value)
            continue
        spec = by_part("v1", name)
        if spec is None:
            expected = ", ".join([_part_list(), *sorted(extra)])
            raise InvalidInput(f"unknown form field {name!r}; expected {expected}", field=name)
        if _unfilled_file(spec, value):
            continue
        if item.get(spec.name) is not None:
            raise InvalidInput(
                f"field {name!r} given twice; one item per multipart request (send a JSON list for several)",
                field=name,
            )
        item.set(spec.name, await _field_value(name, spec, value))
    await form.close()
    return item, extras


def _unfilled_file(spec: ModalitySpec, value: UploadFile | str) -> bool:
    """A file part (image, audio) with no bytes and no file name is a form's file input left empty: Swagger UI's
    "Try it out" sends `audio=`, a browser's form an empty part with filename="". Absent, not an error (an
    empty file that has a name still is one, and so is an empty text: docs/bad-input.md row 9)."""
    if not spec.encoded_file:
        return False
    if isinstance(value, str):
        return value == ""
    return not value.filename and value.size == 0


async def _field_value(name: str, spec: ModalitySpec, value: UploadFile | str) -> bytes | str:
    if isinstance(value, UploadFile):
        return await value.read()
    if spec.encoded_file:
        raise InvalidInput(f"field {name!r} must be a file part (multipart filename=…)", field=name)
    return value


def read_json(body: bytes, settings: Settings) -> list[RawItem]:
    return json_items(parse_json(body), settings)


def parse_json(body: bytes) -> object:
    try:
        return orjson.loads(body)  # on the event loop, so the fast parser (docs/design-choices.md, "JSON bodies")
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"body is not valid JSON: {error}", field="body") from None


def json_items(data: object, settings: Settings) -> list[RawItem]:
    """A parsed `{"inputs": [...]}` → its items, every limit and field checked."""
    if isinstance(data, dict) and isinstance(data.get("inputs"), list):
        count = len(data["inputs"])
        if count > settings.max_items_per_request:  # before validating thousands of items
            raise PayloadTooLarge(
                f"inputs has {count} items; the limit is {settings.max_items_per_request} "
                "(FUSIONSERVE_MAX_ITEMS_PER_REQUEST)",
                field="inputs",
            )
    try:
        request = JsonRequest.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = field_path(first["loc"]) or "body"
        raise InvalidInput(f"{field}: {first['msg']}", field=field) from None
    return [_json_item(i, item) for i, item in enumerate(request.inputs)]


def field_path(location: tuple) -> str:
    """("inputs", 2, "image") → "inputs[2].image"."""
    parts: list[str] = []
    for part in location:
        if isinstance(part, int) and parts:
            parts[-1] += f"[{part}]"
        else:
            parts.append(str(part))
    return ".".join(parts)


def _json_item(index: int, item: BaseModel) -> RawItem:
    prefix, parts = f"inputs[{index}].", {}
    for spec in specs():
        value = getattr(item, spec.parts.v1)
        parts[spec.name] = decode_base64(value, prefix + spec.parts.v1) if spec.encoded_file else value
    return RawItem(prefix=prefix, **parts)


def decode_base64(value: str | None, field: str) -> bytes | None:
    """Strict base64 (a data: URL's payload too) → bytes; InvalidInput naming `field` otherwise. pybase64's
    SIMD decoder, since this runs on the event loop (docs/design-choices.md, "JSON bodies")."""
    if value is None:
        return None
    if value.startswith("data:") and "," in value:  # data:image/png;base64,....
        value = value.split(",", 1)[1]
    try:
        return pybase64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{field} is not valid base64", field=field) from None
