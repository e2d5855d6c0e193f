"""Arrays between processes without pickling copies (docs/design-choices.md "Arrays across
processes"): one ZeroMQ multipart message = an orjson header + one frame per array, sent from the arrays' own
memory (`copy=False`) and read back as numpy views of the received frames, as vLLM's and LitServe's
front-end ↔ engine messages do.

    frames = pack_items(header, items)          # [header bytes, array, array, …] (arrays as memoryviews)
    socket.send_multipart(frames, copy=False)
    header, items = unpack_items(socket.recv_multipart(copy=False))

The header names each array's dtype and shape, in frame order; everything else a message carries (ids,
model, deadlines, errors) is plain JSON in the header. Used by the engine protocol (front-end processes ↔
one engine per device); pure data, no sockets here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson

from service.items import BatchInfo, ItemResult, PreparedItem

Frames = list[Any]  # bytes, memoryview or zmq.Frame


class MalformedMessage(ValueError):
    """A message its receiver cannot act on; `request_id` is its header's id when it had one (to answer it)."""

    def __init__(self, reason: str, request_id: int | str | None = None):
        super().__init__(reason)
        self.reason, self.request_id = reason, request_id


# What each op's header must carry besides its id (engine/server.py's protocol): name → accepted types
REQUIRED_FIELDS = {
    "infer": {"model": str, "timeout_s": int | float, "items": list, "arrays": list},
    "repository": {"action": str},
    "ping": {},
    "cancel": {},
}


def read_header(frames: Sequence[Any]) -> dict:
    """A request's header, checked against REQUIRED_FIELDS; MalformedMessage when it cannot be acted on."""
    try:
        first = frames[0]
        header = orjson.loads(first.bytes if hasattr(first, "bytes") else first)
    except (IndexError, orjson.JSONDecodeError):
        raise MalformedMessage("its header frame is not JSON") from None
    if not isinstance(header, dict):
        raise MalformedMessage("its header is not a JSON object")
    request_id = header.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        raise MalformedMessage("its header has no id (an integer or a string)")
    op = header.get("op")
    if op not in REQUIRED_FIELDS:
        raise MalformedMessage(f"unknown op {op!r}", request_id)
    for name, kind in REQUIRED_FIELDS[op].items():
        value = header.get(name)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise MalformedMessage(f"its {op} header has no valid {name!r}", request_id)
    return header


def _spec(array: np.ndarray) -> list:
    return [array.dtype.str, list(array.shape)]


def _view(frame: Any, spec: list) -> np.ndarray:
    """A read-only numpy view of a received frame (zmq.Frame, bytes or memoryview): no copy."""
    buffer = frame.buffer if hasattr(frame, "buffer") else frame
    dtype, shape = spec
    return np.frombuffer(buffer, dtype=np.dtype(dtype)).reshape(shape)


def pack(header: dict, arrays: Sequence[np.ndarray]) -> Frames:
    """header + arrays → frames; the arrays travel from their own memory (made C-contiguous if they are not)."""
    contiguous = [np.ascontiguousarray(a) for a in arrays]
    head = orjson.dumps({**header, "arrays": [_spec(a) for a in contiguous]})
    return [head, *(memoryview(a).cast("B") if a.size else b"" for a in contiguous)]


def unpack(frames: Sequence[Any]) -> tuple[dict, list[np.ndarray]]:
    first = frames[0]
    header = orjson.loads(first.bytes if hasattr(first, "bytes") else first)
    specs = header.pop("arrays")
    if len(specs) != len(frames) - 1:
        raise ValueError(f"message has {len(frames) - 1} array frames, its header names {len(specs)}")
    return header, [_view(frame, spec) for frame, spec in zip(frames[1:], specs, strict=True)]


# ---- prepared items (front-end → engine) and their results (engine → front-end) -----------------------


def _item_arrays(item: PreparedItem, offset: int) -> tuple[dict, list[np.ndarray]]:
    """An item's arrays in frame order from `offset`, and where each modality's parts are."""
    layout, arrays = {}, []
    for modality in item.modalities:
        value = item.arrays[modality]
        parts = list(value) if isinstance(value, tuple) else [value]  # text: (ids, mask)
        layout[modality] = [offset + len(arrays), len(parts), isinstance(value, tuple)]
        arrays += parts
    return {"layout": layout, "decode_s": item.decode_s}, arrays


def _pack_all(header: dict, key: str, things: Sequence, describe: Callable) -> Frames:
    """Each thing's metadata under header[key], all their arrays in frame order."""
    described, arrays = [], []
    for thing in things:
        meta, parts = describe(thing, len(arrays))
        described.append(meta)
        arrays += parts
    return pack({**header, key: described}, arrays)


def pack_items(header: dict, items: Sequence[PreparedItem]) -> Frames:
    return _pack_all(header, "items", items, _item_arrays)


def unpack_items(frames: Sequence[Any]) -> tuple[dict, list[PreparedItem]]:
    header, arrays = unpack(frames)
    items = []
    for meta in header.pop("items"):
        values = {}
        for modality, (start, count, packed) in meta["layout"].items():
            parts = arrays[start : start + count]
            values[modality] = tuple(parts) if packed else parts[0]
        items.append(PreparedItem(values, meta["decode_s"]))
    return header, items


def _result_arrays(result: ItemResult, offset: int) -> tuple[dict, list[np.ndarray]]:
    named = {"probabilities": result.probabilities, "fused": result.fused}
    named |= {f"embedding:{m}": v for m, v in result.embeddings.items()}
    named |= {f"modality_probabilities:{m}": v for m, v in result.modality_probabilities.items()}
    batches = {name: [b.size, b.queue_s, b.infer_s] for name, b in result.batches.items()}
    meta = {"modalities": result.modalities, "names": list(named), "batches": batches, "start": offset}
    return meta, list(named.values())


def pack_results(header: dict, results: Sequence[ItemResult]) -> Frames:
    return _pack_all(header, "results", results, _result_arrays)


def unpack_results(frames: Sequence[Any]) -> tuple[dict, list[ItemResult]]:
    header, arrays = unpack(frames)
    results = []
    for meta in header.pop("results"):
        named = dict(zip(meta["names"], arrays[meta["start"] : meta["start"] + len(meta["names"])], strict=True))
        results.append(ItemResult(
            meta["modalities"], named["probabilities"], named["fused"],
            {k.split(":", 1)[1]: v for k, v in named.items() if k.startswith("embedding:")},
            {k.split(":", 1)[1]: v for k, v in named.items() if k.startswith("modality_probabilities:")},
            {name: BatchInfo(*info) for name, info in meta["batches"].items()},
        ))  # fmt: skip
    return header, results
