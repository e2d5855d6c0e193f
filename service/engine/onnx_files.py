"""Which files an ONNX graph makes onnxruntime read besides itself: its tensors' external data.

onnxruntime opens each `location` next to the graph, so a file the manifest does not list would be served
unverified (no sha256). The serving image has no `onnx` package, so the protobuf wire format is walked here,
along the few fields that can hold a tensor (field numbers from onnx.proto); raw tensor bytes are skipped by
their length, never copied, so a graph with hundreds of MB of inline weights costs a walk over its fields only.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path

EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
# message → {field number: message type of that (repeated) field}; only what can reach a TensorProto
SCHEMA: dict[str, dict[int, str]] = {
    "model": {7: "graph", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
}


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise ValueError("truncated varint")
        byte = data[at]
        value, shift, at = value | (byte & 0x7F) << shift, shift + 7, at + 1
        if not byte & 0x80:
            return value, at


def _fields(data: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, varint value or length-delimited bytes) of one message; fixed-width fields skipped."""
    at = 0
    while at < len(data):
        tag, at = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, at = _varint(data, at)
            yield number, value
        elif wire == 2:
            length, at = _varint(data, at)
            if at + length > len(data):
                raise ValueError("truncated field")
            yield number, data[at : at + length]
            at += length
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _tensor_location(data: memoryview) -> str | None:
    external, location = False, None
    for number, value in _fields(data):
        if number == 14:
            external = value == EXTERNAL
        elif number == 13 and isinstance(value, memoryview):
            entry = {n: bytes(v).decode("utf-8", "replace") for n, v in _fields(value) if isinstance(v, memoryview)}
            if entry.get(1) == "location":
                location = entry.get(2)
    return location if external else None


def _locations(data: memoryview, kind: str) -> Iterator[str]:
    if kind == "tensor":
        if (location := _tensor_location(data)) is not None:
            yield location
        return
    children = SCHEMA[kind]
    for number, value in _fields(data):
        if number in children and isinstance(value, memoryview):
            yield from _locations(value, children[number])


def external_data_files(path: Path) -> set[str]:
    """The `location` of every tensor of the graph at `path` stored outside it (relative to its directory).
    Mapped, not read: the pages of inline weights are never touched."""
    with open(path, "rb") as handle:
        if not os.fstat(handle.fileno()).st_size:
            return set()
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                return set(_locations(view, "model"))
            except (ValueError, RecursionError) as error:
                raise ValueError(f"{Path(path).name} is not a readable ONNX graph ({error})") from None
            finally:
                view.release()
