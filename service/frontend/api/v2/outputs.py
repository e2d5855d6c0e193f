"""KServe V2 outputs: what `infer` answers (output_specs, also the model metadata's), selected by the request and
built from the results. A video row's segments are stacked across rows in `segment_*` outputs of S rows
(docs/protocols.md, "Video over KServe V2"), so every per-item output keeps its [N, ...] shape. The embedding
outputs come in the request's dimensions and embedding_type (v2/embeddings.py): FP32 [., d], INT8 / UINT8 [., d],
or packed bits INT8 / UINT8 [., ceil(d/8)]; a row without that embedding is zeros, whatever the datatype."""

from __future__ import annotations

import numpy as np

from service.embedding_types import DTYPES
from service.errors import InvalidInput
from service.frontend.api.embedding_format import EmbeddingFormat
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


DATATYPES = {"<f4": "FP32", "i1": "INT8", "u1": "UINT8"}  # an embedding type's numpy dtype → its V2 datatype


def embedding_tensor(name: str, values: list[np.ndarray], absent: list[bool], written: EmbeddingFormat) -> Tensor:
    """N embeddings of the full dim (zeros where `absent`) → the output tensor in the request's format."""
    rows, datatype = len(values), DATATYPES[DTYPES[written.kind]]
    if not rows:
        return Tensor(name, datatype, [0, written.width], np.zeros((0, written.width), DTYPES[written.kind]))
    array = written.array(np.stack(values).astype(np.float32, copy=False))  # a new array: ours to zero
    if any(absent):
        array[np.asarray(absent)] = 0
    return Tensor(name, datatype, [rows, written.width], array)


def selected(request: InferRequest, manifest: Manifest) -> list[str]:
    known = [spec["name"] for spec in output_specs(manifest)]
    if not request.outputs:  # absent or empty (gRPC cannot tell them apart): every output
        return known
    for name in request.outputs:
        if name not in known:
            raise InvalidInput(f"unknown output {name!r}; model {manifest.name!r} has {', '.join(known)}", "outputs")
    return list(dict.fromkeys(request.outputs))  # duplicates answered once


def _segment_output(name: str, manifest: Manifest, done: Inference, written: EmbeddingFormat) -> Tensor:
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
    if name == "segment_fused_embedding":
        return embedding_tensor(name, [v for _, s in rows for v in s.fused], [False] * count, written)
    if name.endswith("_embedding"):  # segment_<video slot>_embedding: zero rows where a segment had none
        slot = name.removeprefix("segment_").removesuffix("_embedding")
        column = VIDEO_SLOTS.index(slot)
        values = [v for _, s in rows for v in s.embeddings.get(slot, np.zeros((len(s), dim), np.float32))]
        return embedding_tensor(name, values, [not p[column] for _, s in rows for p in s.present], written)
    if name == "segment_bounds":
        parts, width = [s.bounds for _, s in rows], 2
    else:  # segment_probabilities
        parts, width = [s.probabilities for _, s in rows], classes
    array = np.concatenate(parts or [np.zeros((0, width), np.float32)]).astype(np.float32, copy=False)  # [S,width]
    return Tensor(name, "FP32", [count, width], array.reshape(count, width))


def output(name: str, manifest: Manifest, done: Inference, written: EmbeddingFormat | None = None) -> Tensor:
    written = written or EmbeddingFormat(manifest.embedding_dim, manifest.embedding_dim)
    if name.startswith("segment_"):
        return _segment_output(name, manifest, done, written)
    results, rows = done.results, len(done.results)
    modalities = manifest.modalities()
    if name == "label":
        labels = [manifest.labels[int(np.argmax(r.probabilities))].encode() for r in results]
        return Tensor(name, "BYTES", [rows], labels)
    if name == "present":
        present = np.array([[m in r.modalities for m in modalities] for r in results], dtype=bool)
        return Tensor(name, "BOOL", [rows, len(modalities)], present.reshape(rows, len(modalities)))
    if name == "fused_embedding":
        return embedding_tensor(name, [r.fused for r in results], [False] * rows, written)
    if name.endswith("_embedding"):  # <slot>_embedding: zeros where the row had none
        slot, zeros = name.removesuffix("_embedding"), np.zeros(manifest.embedding_dim, np.float32)
        values = [r.embeddings.get(slot, zeros) for r in results]
        return embedding_tensor(name, values, [slot not in r.embeddings for r in results], written)
    array = np.stack([r.probabilities for r in results]).astype(np.float32, copy=False)  # probabilities
    return Tensor(name, "FP32", list(array.shape), array)
