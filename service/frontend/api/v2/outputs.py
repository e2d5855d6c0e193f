"""KServe V2 outputs: what `infer` answers (output_specs, also the model metadata's), selected by the request and
built from the results. A video row's segments are stacked across rows in `segment_*` outputs of S rows
(docs/protocols.md, "Video over KServe V2"), so every per-item output keeps its [N, ...] shape."""

from __future__ import annotations

import numpy as np

from service.errors import InvalidInput
from service.frontend.api.v2.tensors import InferRequest, Tensor
from service.frontend.cycle import Inference
from service.manifest import VIDEO_SLOTS, Manifest


def output_specs(manifest: Manifest) -> list[dict]:
    """Every output of `infer`, in the order it answers them when the request selects none."""
    classes, dim, modalities = len(manifest.labels), manifest.embedding_dim, manifest.modalities()
    specs = [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "fused_embedding", "datatype": "FP32", "shape": [-1, dim]},
    ]
    specs += [
        {"name": f"{slot}_embedding", "datatype": "FP32", "shape": [-1, dim]} for slot in manifest.encoders.slots()
    ]
    specs.append({"name": "present", "datatype": "BOOL", "shape": [-1, len(modalities)]})
    if "video" in modalities:
        specs += segment_specs(manifest)
    return specs


def segment_specs(manifest: Manifest) -> list[dict]:
    """A video model's per-segment outputs: S rows, every video row's segments in row then time order."""
    classes, dim = len(manifest.labels), manifest.embedding_dim
    slots = [slot for slot in VIDEO_SLOTS if slot in manifest.encoders.slots()]
    return [
        {"name": "segment_item", "datatype": "INT32", "shape": [-1]},
        {"name": "segment_bounds", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "segment_probabilities", "datatype": "FP32", "shape": [-1, classes]},
        {"name": "segment_label", "datatype": "BYTES", "shape": [-1]},
        {"name": "segment_fused_embedding", "datatype": "FP32", "shape": [-1, dim]},
        *({"name": f"segment_{slot}_embedding", "datatype": "FP32", "shape": [-1, dim]} for slot in slots),
        {"name": "segment_present", "datatype": "BOOL", "shape": [-1, len(VIDEO_SLOTS)]},
    ]


def selected(request: InferRequest, manifest: Manifest) -> list[str]:
    known = [spec["name"] for spec in output_specs(manifest)]
    if not request.outputs:  # absent or empty (gRPC cannot tell them apart): every output
        return known
    for name in request.outputs:
        if name not in known:
            raise InvalidInput(f"unknown output {name!r}; model {manifest.name!r} has {', '.join(known)}", "outputs")
    return list(dict.fromkeys(request.outputs))  # duplicates answered once


def _segment_output(name: str, manifest: Manifest, done: Inference) -> Tensor:
    """One `segment_*` output: the segments of every video row, stacked (S rows; zero when no row has video)."""
    rows = [(index, r.segments) for index, r in enumerate(done.results) if r.segments is not None]
    count, dim, classes = sum(len(s) for _, s in rows), manifest.embedding_dim, len(manifest.labels)
    if name == "segment_item":
        items = np.concatenate([np.full(len(s), index, np.int32) for index, s in rows] or [np.zeros(0, np.int32)])
        return Tensor(name, "INT32", [count], items)
    if name == "segment_label":
        tops = [manifest.labels[int(i)].encode() for _, s in rows for i in np.argmax(s.probabilities, axis=1)]
        return Tensor(name, "BYTES", [count], tops)
    if name == "segment_present":
        present = np.concatenate([s.present for _, s in rows] or [np.zeros((0, len(VIDEO_SLOTS)), bool)])
        return Tensor(name, "BOOL", [count, len(VIDEO_SLOTS)], present.astype(bool, copy=False))
    if name == "segment_bounds":
        parts, width = [s.bounds for _, s in rows], 2
    elif name == "segment_probabilities":
        parts, width = [s.probabilities for _, s in rows], classes
    elif name == "segment_fused_embedding":
        parts, width = [s.fused for _, s in rows], dim
    else:  # segment_<video slot>_embedding: zero rows where a segment had none
        slot = name.removeprefix("segment_").removesuffix("_embedding")
        parts, width = [s.embeddings.get(slot, np.zeros((len(s), dim), np.float32)) for _, s in rows], dim
    array = np.concatenate(parts or [np.zeros((0, width), np.float32)]).astype(np.float32, copy=False)  # [S,width]
    return Tensor(name, "FP32", [count, width], array.reshape(count, width))


def output(name: str, manifest: Manifest, done: Inference) -> Tensor:
    if name.startswith("segment_"):
        return _segment_output(name, manifest, done)
    results, rows = done.results, len(done.results)
    modalities = manifest.modalities()
    if name == "label":
        labels = [manifest.labels[int(np.argmax(r.probabilities))].encode() for r in results]
        return Tensor(name, "BYTES", [rows], labels)
    if name == "present":
        present = np.array([[m in r.modalities for m in modalities] for r in results], dtype=bool)
        return Tensor(name, "BOOL", [rows, len(modalities)], present.reshape(rows, len(modalities)))
    if name == "probabilities":
        values = [r.probabilities for r in results]
    elif name == "fused_embedding":
        values = [r.fused for r in results]
    else:  # <slot>_embedding: zeros where the row had none
        slot, zeros = name.removesuffix("_embedding"), np.zeros(manifest.embedding_dim, np.float32)
        values = [r.embeddings.get(slot, zeros) for r in results]
    array = np.stack(values).astype(np.float32, copy=False)
    return Tensor(name, "FP32", list(array.shape), array)
