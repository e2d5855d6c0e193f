"""Zero-shot classification from text labels, `POST /v1/models/{model}/zero-shot` (docs/zero-shot.md): any item,
as classify takes it, against labels the caller names, through the text encoder into the joint space.

One request is one cycle of the data plane (service/frontend/cycle.py) with v1's deadline, disconnect watch,
errors and Server-Timing; the metrics' endpoint label is "zero_shot". The label texts the front-end's cache
(service/frontend/label_cache.py) lacks are text-only items of the same `backend.run` call as the inputs, so
they share the text batcher's batches with everyone's texts.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from service.errors import InvalidInput, PayloadTooLarge
from service.frontend.api.deadline import Deadline, header_timeout_ms
from service.frontend.api.infer import OrjsonResponse, disconnect_watch, plane_of, serve_http
from service.frontend.api.routes import OVERLAP_S, SEGMENT_S, video_options
from service.frontend.api.schemas import ERRORS, JSON_SCHEMA, MULTIPART_SCHEMA, ClassifySegment, Evidence, LabelScore
from service.frontend.api.zero_shot_request import read_zero_shot
from service.frontend.api.zero_shot_scores import Scorer
from service.frontend.cycle import Admitted, Call, Decoded, Inference
from service.frontend.label_cache import label_cache_of
from service.items import RawItem
from service.manifest import MODALITIES
from service.zero_shot import label_text, normalise

router = APIRouter()
ENDPOINT = "zero_shot"  # the endpoint label of fusionserve_requests_*


class ZeroShotResult(BaseModel):
    modalities: list[str]
    labels: list[LabelScore] = Field(description="every label, best first; the scores sum to 1")
    evidence: list[Evidence] = Field(description="each present slot's own best label under its modality's template")
    agreement: bool
    segments: list[ClassifySegment] | None = Field(None, description="a video item's answer per segment")


class ZeroShotResponse(BaseModel):
    model: str
    version: str
    calibrated: bool = Field(description="the temperature was fitted on the bundle's validation split")
    temperature: float
    results: list[ZeroShotResult]


class ZeroShotCodec:
    """Body read (and labels checked) before admission; the label texts to embed chosen after it, per version."""

    def __init__(self, request: Request, options: dict):
        self.request, self.options = request, options
        self.settings = plane_of(request).settings
        self.deadline = Deadline(time.monotonic(), self.settings.default_deadline_ms)

    def check(self) -> None:
        self.deadline.state(header_timeout_ms(self.request.headers))

    async def read_body(self) -> None:
        self.body = await read_zero_shot(self.request, self.settings)
        for item in self.body.items:  # the query's video options, as classify's
            item.options, item.options_prefix = dict(self.options), ""

    async def decode(self, admitted: Admitted) -> Decoded:
        manifest = admitted.state.bundle.manifest
        if manifest.encoders.text is None:
            raise InvalidInput(f"model {admitted.model!r} version {admitted.state.version!r} has no text encoder, "
                               "so it cannot embed labels", field="labels")  # fmt: skip
        body = self.body
        self.cache = label_cache_of(self.request.app.state)
        self.key = (admitted.model, admitted.state.version, admitted.state.bundle.manifest_sha256)
        used = {body.templates[m] for item in body.items for m in item.modalities()}
        self.texts = {t: [label_text(t, label) for label in body.labels] for t in sorted(used)}
        missing = self._look_up()
        self._check_queue(len(missing), sum(item.get("text") is not None for item in body.items))
        self.missing = list(missing)
        extra = [RawItem(text=text, prefix=f"labels[{index}].") for text, index in missing.items()]
        return Decoded(body.items + extra, self.deadline.at)

    def _look_up(self) -> dict[str, int]:
        """The cached rows into self.rows; the texts the cache lacks, each with the index of its label."""
        self.rows, missing = {}, {}
        for texts in self.texts.values():
            for index, text in enumerate(texts):
                if text in self.rows or text in missing:
                    continue  # two templates that give one text: embedded once
                row = self.cache.get((*self.key, text))
                if row is None:
                    missing[text] = index
                else:
                    self.rows[text] = row
        return missing

    def _check_queue(self, labels: int, texts: int) -> None:
        """One backend.run queues every text at once: more than the text queue holds could never be served."""
        limit = self.settings.max_queued_items
        if labels + texts > limit:
            raise PayloadTooLarge(
                f"labels: {labels} label texts to embed (labels x distinct templates of the items' modalities) and "
                f"{texts} input texts exceed the text queue's {limit} items (FUSIONSERVE_MAX_QUEUED_ITEMS)",
                field="labels",
            )

    def watch(self) -> asyncio.Future:
        return disconnect_watch(self.request)

    def encode(self, admitted: Admitted, done: Inference) -> Response:
        count = len(self.body.items)
        for text, result in zip(self.missing, done.results[count:], strict=True):
            self.rows[text] = result.embeddings["text"]
            self.cache.put((*self.key, text), result.embeddings["text"])
        rows = {t: normalise(np.stack([self.rows[text] for text in texts])) for t, texts in self.texts.items()}
        manifest = admitted.state.bundle.manifest
        temperature, calibrated = manifest.joint_space.zero_shot_temperature()
        scorer = Scorer(self.body.labels, self.body.templates, rows, temperature)
        return OrjsonResponse({
            "model": manifest.name, "version": admitted.state.version, "calibrated": calibrated,
            "temperature": temperature, "results": [scorer.item(result) for result in done.results[:count]],
        })  # fmt: skip


LABELS_SCHEMA = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "uniqueItems": True}
TEMPLATE_SCHEMA = {"type": "string", "description": 'where each label goes: "a photo of {}"'}
ZERO_SHOT_BODY = {  # classify's bodies (api/schemas.py; multipart first: Swagger UI's file pickers) and two fields
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": MULTIPART_SCHEMA | {"required": ["labels"], "properties": {
                **MULTIPART_SCHEMA["properties"], "labels": LABELS_SCHEMA, "template": TEMPLATE_SCHEMA,
            }}},
            "application/json": {"schema": JSON_SCHEMA | {"required": ["inputs", "labels"], "properties": {
                **JSON_SCHEMA["properties"], "labels": LABELS_SCHEMA,
                "template": {"oneOf": [TEMPLATE_SCHEMA, {"type": "object", "properties": {
                    m: TEMPLATE_SCHEMA for m in MODALITIES}, "additionalProperties": False}]},
            }}},
        },
    }
}  # fmt: skip


@router.post(
    "/v1/models/{model}/zero-shot",
    response_model=ZeroShotResponse,
    responses=ERRORS,
    openapi_extra=ZERO_SHOT_BODY,
    tags=["inference"],
)
async def zero_shot(
    request: Request, model: str, version: str | None = None,
    segment_s: float | None = SEGMENT_S, overlap_s: float | None = OVERLAP_S,
) -> JSONResponse:  # fmt: skip
    """Score each item against the labels the request names (softmax over them of cosine / temperature in the
    joint space), with each present modality's own best label and whether it agrees."""
    codec = ZeroShotCodec(request, video_options(segment_s, overlap_s))
    return await serve_http(request, Call(model, version, ENDPOINT), codec)
