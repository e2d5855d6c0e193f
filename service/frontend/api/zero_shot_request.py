"""A zero-shot request's body (docs/zero-shot.md): the items as classify takes them (api/inputs.py), the candidate
`labels` and the optional `template`, from JSON or multipart; checked before admission, since none of it needs
the model."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from fastapi import Request

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.frontend.api.inputs import json_items, parse_json, read_multipart_form
from service.items import RawItem
from service.preprocess.text import decode_text
from service.settings import Settings
from service.zero_shot import label_text, parse_template

OPTIONS = frozenset({"labels", "template"})  # the body's fields beside classify's
ACCEPTED = (
    'application/json ({"inputs": [...], "labels": [...], "template": ...}) or multipart/form-data '
    "(one item's fields, a `labels` field per label, optionally `template`)"
)


@dataclass
class ZeroShotRequest:
    items: list[RawItem]
    labels: list[str]
    templates: dict[str, str]  # modality → template (service.zero_shot.parse_template)


async def read_zero_shot(request: Request, settings: Settings) -> ZeroShotRequest:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json":
        data = parse_json(await request.body())
        options = {key: data.pop(key) for key in OPTIONS if key in data} if isinstance(data, dict) else {}
        items = json_items(data, settings)  # classify's rules, and its errors, for the rest of the body
        labels, template = options.get("labels"), options.get("template")
    elif media == "multipart/form-data":
        item, fields = await read_multipart_form(request, settings, OPTIONS)
        items, labels, template = [item], fields.get("labels"), _form_template(fields.get("template"))
    else:
        raise UnsupportedMediaType(f"Content-Type {media or '(none)'} is not accepted; send {ACCEPTED}",
                                   field="content-type")  # fmt: skip
    labels = check_labels(labels, settings)
    templates = parse_template(template)
    check_label_texts(labels, templates, settings)
    return ZeroShotRequest(items, labels, templates)


def _form_template(values: list[str] | None) -> str | dict | None:
    """A form's `template`: a string, or a JSON object of them by modality (`{"image": "a photo of {}"}`)."""
    if values is None:
        return None
    if len(values) > 1:
        raise InvalidInput("field 'template' given twice; send one (a JSON object for one per modality)",
                           field="template")  # fmt: skip
    value = values[0]
    if value.lstrip().startswith("{"):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value  # a string template that starts with its placeholder, "{} photo"
        if isinstance(parsed, dict):
            return parsed
    return value


def check_labels(labels: object, settings: Settings) -> list[str]:
    """1..max_zero_shot_labels distinct non-empty strings; 413 over the limit, else 422 naming the label."""
    if labels is None:
        raise InvalidInput("labels: Field required (the candidate labels, a list of strings)", field="labels")
    if not isinstance(labels, list):
        raise InvalidInput("labels must be a list of strings", field="labels")
    if not labels:
        raise InvalidInput("labels must hold at least one label", field="labels")
    limit = settings.max_zero_shot_labels
    if len(labels) > limit:
        raise PayloadTooLarge(
            f"labels has {len(labels)} labels; the limit is {limit} (FUSIONSERVE_MAX_ZERO_SHOT_LABELS)",
            field="labels",
        )
    seen: dict[str, int] = {}
    for index, label in enumerate(labels):
        field = f"labels[{index}]"
        if not isinstance(label, str) or not label.strip():
            raise InvalidInput(f"{field} must be a non-empty string", field=field)
        if label in seen:
            raise InvalidInput(f"{field} {label!r} repeats labels[{seen[label]}]; labels must be distinct",
                               field=field)  # fmt: skip
        seen[label] = index
    return labels


def check_label_texts(labels: list[str], templates: dict[str, str], settings: Settings) -> None:
    """Every text the encoder would see is text it accepts (UTF-8, no NUL, FUSIONSERVE_MAX_TEXT_CHARS), checked
    now so a bad one is a 422 naming its label, not an error of an item the caller never sent."""
    for template in set(templates.values()):
        for index, label in enumerate(labels):
            decode_text(label_text(template, label), max_chars=settings.max_text_chars, field=f"labels[{index}]")
