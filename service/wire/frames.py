"""Arrays between processes without pickling (docs/design-choices.md "Arrays across processes"): one ZeroMQ
multipart message = an orjson header, one frame holding every small array end to end, and one frame per large
array, sent from the array's own memory (`copy=False`); read back as numpy views of the received frames, as
vLLM's and LitServe's front-end ↔ engine messages do.

    frames = pack_items(header, items)          # [header, small arrays' frame, large array, …]
    socket.send_multipart(frames, copy=False)
    header, items = unpack_items(socket.recv_multipart(copy=False))

Small arrays (token ids, embeddings, probabilities) share a frame because a frame costs more to send than
copying a few kilobytes; an image or a spectrogram is not copied. The header names each array's dtype, shape,
frame and offset; everything else a message carries (ids, model, deadlines, errors) is plain JSON in the
header. Used by the engine protocol (front-end processes ↔ one engine per device); pure data, no sockets here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from service.items import PreparedItem

Frames = list[Any]  # bytes, memoryview or zmq.Frame


class MalformedMessage(ValueError):
    """A message its receiver cannot act on; `request_id` is its header's id when it had one (to answer it)."""

    def __init__(self, reason: str, request_id: int | str | None = None):
        super().__init__(reason)
        self.reason, self.request_id = reason, request_id


# What each op's header must carry besides its id (engine/server.py's protocol): name → accepted types. A
# `calls` message has no id of its own: each of its calls has one (calls.py).
REQUIRED_FIELDS = {
    "calls": {"calls": list, "arrays": list},
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
    request_id, op = header.get("id"), header.get("op")
    if op != "calls" and (isinstance(request_id, bool) or not isinstance(request_id, int | str)):
        raise MalformedMessage("its header has no id (an integer or a string)")
    if op not in REQUIRED_FIELDS:
        raise MalformedMessage(f"unknown op {op!r}", request_id)
    for name, kind in REQUIRED_FIELDS[op].items():
        value = header.get(name)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise MalformedMessage(f"its {op} header has no valid {name!r}", request_id)
    return header


SMALL_BYTES = 64 * 1024  # arrays below this are copied into the shared frame; larger ones travel from their memory
ALIGN = 16  # each small array starts at a multiple of this, so its view is aligned for any dtype


def _small_frame(arrays: Sequence[np.ndarray]) -> tuple[bytearray, list[int]]:
    """The small arrays end to end (aligned), and where each starts."""
    offsets, size = [], 0
    for array in arrays:
        offsets.append(size)
        size += -(-array.nbytes // ALIGN) * ALIGN
    blob = bytearray(size)
    for array, offset in zip(arrays, offsets, strict=True):
        blob[offset : offset + array.nbytes] = memoryview(array).cast("B")
    return blob, offsets


def pack(header: dict, arrays: Sequence[np.ndarray]) -> Frames:
    """header + arrays → frames: [header, small arrays' frame, each large array] (made C-contiguous)."""
    contiguous = [np.ascontiguousarray(a) for a in arrays]
    small = [a for a in contiguous if a.nbytes < SMALL_BYTES]
    blob, offsets = _small_frame(small)
    where, large, next_small = [], [], iter(offsets)
    for array in contiguous:
        if array.nbytes < SMALL_BYTES:
            where.append([array.dtype.str, list(array.shape), 1, next(next_small)])
        else:
            large.append(memoryview(array).cast("B"))
            where.append([array.dtype.str, list(array.shape), 1 + len(large), 0])
    return [orjson.dumps({**header, "arrays": where}), blob, *large]


def _view(frames: Sequence[Any], spec: list) -> np.ndarray:
    """A read-only numpy view into a received frame (zmq.Frame, bytes or memoryview): no copy."""
    dtype, shape, index, offset = spec
    frame = frames[index]
    buffer = frame.buffer if hasattr(frame, "buffer") else frame
    dtype, count = np.dtype(dtype), math.prod(shape)
    if not 0 <= offset <= len(buffer) - count * dtype.itemsize:
        raise ValueError(f"an array of {count} × {dtype} at offset {offset} does not fit frame {index}")
    return np.frombuffer(buffer, dtype=dtype, count=count, offset=offset).reshape(shape)


def arrays_of(header: dict, frames: Sequence[Any]) -> list[np.ndarray]:
    """The arrays a parsed header names (popped from it), as views of the message's frames; ValueError when
    the frames do not hold them."""
    specs = header.pop("arrays")
    if any(not isinstance(s, list) or len(s) != 4 or not 1 <= s[2] < len(frames) for s in specs):
        raise ValueError(f"its header names arrays in frames it does not have ({len(frames)} frames)")
    return [_view(frames, spec) for spec in specs]


def unpack(frames: Sequence[Any]) -> tuple[dict, list[np.ndarray]]:
    first = frames[0]
    header = orjson.loads(first.bytes if hasattr(first, "bytes") else first)
    return header, arrays_of(header, frames)


# ---- prepared items (front-end → engine) and their results (engine → front-end) -----------------------


def item_arrays(item: PreparedItem, offset: int) -> tuple[dict, list[np.ndarray]]:
    """An item's arrays in order from `offset` of the message's arrays, and where each modality's parts are."""
    layout, arrays = {}, []
    for modality in item.modalities:
        value = item.arrays[modality]
        parts = list(value) if isinstance(value, tuple) else [value]  # text: (ids, mask)
        layout[modality] = [offset + len(arrays), len(parts), isinstance(value, tuple)]
        arrays += parts
    return {"layout": layout, "decode_s": item.decode_s}, arrays


def items_from(metas: list, arrays: list[np.ndarray]) -> list[PreparedItem]:
    items = []
    for meta in metas:
        values = {}
        for modality, (start, count, packed) in meta["layout"].items():
            parts = arrays[start : start + count]
            if len(parts) != count:
                raise ValueError(f"{modality} names arrays {start}..{start + count - 1} of {len(arrays)}")
            values[modality] = tuple(parts) if packed else parts[0]
        items.append(PreparedItem(values, meta["decode_s"]))
    return items


def pack_items(header: dict, items: Sequence[PreparedItem]) -> Frames:
    """One list of items in one message (calls.py packs many calls' items the same way)."""
    metas, arrays = [], []
    for item in items:
        meta, parts = item_arrays(item, len(arrays))
        metas.append(meta)
        arrays += parts
    return pack({**header, "items": metas}, arrays)


def unpack_items(frames: Sequence[Any]) -> tuple[dict, list[PreparedItem]]:
    header, arrays = unpack(frames)
    return header, items_from(header.pop("items"), arrays)
