"""The Open Inference Protocol (KServe V2) model, transport-free: REST (rest.py) and gRPC (grpc_server.py) both
subclass V2Codec — they read their wire format into an InferRequest and write the InferResponse — and run it
through the data plane's request cycle (service/frontend/cycle.py).

Inputs are encoded media, as OpenVINO Model Server takes them: `image`, `audio` and `video` BYTES tensors of
files, `text` a BYTES tensor of UTF-8, each of shape [N]; an empty element means "absent" for that row. Rows become
v1 RawItems, so decoding, limits and error messages are v1's; a row's fields are named "image[2]". The request
parameters `segment_s` / `overlap_s` segment every video row (errors name `parameters.segment_s`).

A video row answers per segment too: the segments of every row are stacked in `segment_*` outputs of S rows
(`segment_item` says which row each belongs to, `segment_bounds` its start and end in seconds), so the
per-item outputs keep their [N, …] shape (docs/protocols.md, "Video over KServe V2").

The cycle admits at the door, before anything is decoded:
    served = await plane.serve(Call(model, version, endpoint), RestCodec(...))
"""

from __future__ import annotations

import asyncio
from importlib import metadata

from service.errors import FusionError, InvalidInput, PayloadTooLarge
from service.frontend.api.embedding_format import EmbeddingFormat
from service.frontend.api.v2.embeddings import embedding_format, joint_space_parameters
from service.frontend.api.v2.outputs import output, output_specs, selected
from service.frontend.api.v2.tensors import InferRequest, InferResponse, Tensor
from service.frontend.cycle import Admitted, Decoded, Inference
from service.frontend.dataplane import DataPlane
from service.items import RawItem
from service.manifest import Manifest
from service.modalities.registry import by_part, modality
from service.settings import Settings

PLATFORM = "fusionserve"
OPTIONS = ("segment_s", "overlap_s")  # request parameters every row's video reads (RawItem.options)
EXTENSIONS = ["binary_tensor_data", "model_repository"]  # Triton's names (binary tensors: REST only)


def error_message(error: FusionError) -> str:
    """The v1 message; V2 errors have no field slot, so the field leads when the message does not name it."""
    if error.field and error.field not in error.message:
        return f"{error.field}: {error.message}"
    return error.message


def server_metadata() -> dict:
    try:
        version = metadata.version("fusionserve")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "0+unknown"
    return {"name": PLATFORM, "version": version, "extensions": list(EXTENSIONS)}


# ---- model metadata --------------------------------------------------------------------------------------


def _video_defaults(manifest: Manifest) -> dict:
    """A video model's default segmentation: what a request without segment_s / overlap_s parameters gets."""
    video = manifest.encoder("video")
    return {} if video is None else {name: getattr(video.preprocess, name) for name in OPTIONS}


def model_metadata(plane: DataPlane, model: str, version: str | None) -> dict:
    """Of the version asked for, else the default (newest ready) one; 404 unknown, 503 not ready."""
    state = plane.resolve(model, version)
    manifest = state.bundle.manifest
    return {
        "name": model,
        "versions": plane.ready_versions(model),
        "platform": PLATFORM,
        "inputs": [{"name": modality(m).parts.v2, "datatype": "BYTES", "shape": [-1]} for m in manifest.modalities()],
        "outputs": output_specs(manifest),
        "parameters": {
            "version": state.version,
            "labels": manifest.labels,
            "embedding_dim": manifest.embedding_dim,
            "modalities": manifest.modalities(),
            "fusion": manifest.fusion.strategy,
            "max_items_per_request": plane.settings.max_items_per_request,
            **_video_defaults(manifest),
            **joint_space_parameters(manifest),
        },
    }


# ---- infer -----------------------------------------------------------------------------------------------


def _check_input(tensor: Tensor, manifest: Manifest) -> str:
    """The modality `tensor` carries, once its name, type and shape are right."""
    accepted = ", ".join(modality(m).parts.v2 for m in manifest.modalities())
    spec = by_part("v2", tensor.name)
    if spec is None:
        raise InvalidInput(f"unknown input {tensor.name!r}; model {manifest.name!r} accepts {accepted}", tensor.name)
    if spec.name not in manifest.modalities():
        raise InvalidInput(f"model {manifest.name!r} has no {spec.name} encoder; it accepts {accepted}", tensor.name)
    what = "encoded files" if spec.encoded_file else "UTF-8 strings"
    if tensor.datatype != "BYTES":
        raise InvalidInput(f"{tensor.name} must be a BYTES tensor of {what}, not {tensor.datatype}", tensor.name)
    if len(tensor.shape) != 1:
        raise InvalidInput(f"{tensor.name} must have shape [N] (one element per row), not {tensor.shape}", tensor.name)
    if len(tensor.data) != tensor.shape[0]:
        raise InvalidInput(
            f"{tensor.name} has {len(tensor.data)} elements but its shape {tensor.shape} says {tensor.shape[0]}",
            tensor.name,
        )
    return spec.name


def _row_count(inputs: list[Tensor], manifest: Manifest, limit: int) -> int:
    if not inputs:
        raise InvalidInput(f"no input: send at least one of {', '.join(manifest.modalities())}", "inputs")
    names = [t.name for t in inputs]
    for name in names:
        if names.count(name) > 1:
            raise InvalidInput(f"input {name!r} given twice", name)
    for tensor in inputs:
        _check_input(tensor, manifest)
    counts = {t.name: t.shape[0] for t in inputs}
    if len(set(counts.values())) > 1:
        sizes = ", ".join(f"{name} has {n}" for name, n in counts.items())
        raise InvalidInput(f"inputs differ in their number of rows ({sizes}); every input needs the same N", "inputs")
    rows = counts[names[0]]
    if rows > limit:
        raise PayloadTooLarge(
            f"{names[0]} has {rows} rows; the limit is {limit} (FUSIONSERVE_MAX_ITEMS_PER_REQUEST)", names[0]
        )
    if rows == 0:
        raise InvalidInput("inputs have no rows; send at least one", "inputs")
    return rows


def raw_items(request: InferRequest, manifest: Manifest, limit: int) -> list[RawItem]:
    """Validated tensors → one RawItem per row; empty elements are absent modalities."""
    rows = _row_count(request.inputs, manifest, limit)
    options = {name: request.parameters[name] for name in OPTIONS if request.parameters.get(name) is not None}
    items = [RawItem(suffix=f"[{row}]", options=options, options_prefix="parameters.") for row in range(rows)]
    for tensor in request.inputs:
        name = by_part("v2", tensor.name).name  # known: _row_count checked every input
        for item, element in zip(items, tensor.data, strict=True):
            if len(element):
                item.set(name, bytes(element))
    for row, item in enumerate(items):
        if not item.modalities():
            raise InvalidInput(f"no input: send at least one of {', '.join(manifest.modalities())}", f"row[{row}]")
    return items


class V2Codec:
    """KServe V2's half of the request cycle, shared by REST and gRPC: tensors in, rows through the data plane,
    output tensors out. A transport supplies `read` (its wire format → InferRequest and the deadline), `write`
    (InferResponse → its answer) and, if it can hear the caller leave, `watch`."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.request: InferRequest | None = None
        self.selected: list[str] = []
        self.written: EmbeddingFormat | None = None

    def check(self) -> None:
        pass

    async def read(self, admitted: Admitted) -> tuple[InferRequest, float]:
        raise NotImplementedError

    def write(self, response: InferResponse):
        raise NotImplementedError

    def watch(self) -> asyncio.Future | None:
        return None

    async def decode(self, admitted: Admitted) -> Decoded:
        self.request, deadline = await self.read(admitted)
        manifest = admitted.state.bundle.manifest
        self.selected = selected(self.request, manifest)
        self.written = embedding_format(manifest, self.request.parameters)  # before any row is decoded
        return Decoded(raw_items(self.request, manifest, self.settings.max_items_per_request), deadline)

    def encode(self, admitted: Admitted, done: Inference):
        manifest = admitted.state.bundle.manifest
        outputs = [output(name, manifest, done, self.written) for name in self.selected]
        return self.write(InferResponse(admitted.model, admitted.state.version, outputs, self.request.id))
