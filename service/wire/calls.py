"""Many calls in one message, both ways (docs/architecture.md "The engine sees batches"): a front-end sends every
call it has ready in one event-loop turn as one `calls` message, and the engine answers every call that finished
in one turn as one `replies` message, as vLLM's engine core handles a step rather than a request. The arrays of
all the calls travel together (frames.py: small ones share one frame).

    frames = pack_calls([(call, items), …])     # call: {"id", "model", "version", "timeout_s", "request_id",
                                                #        "traceparent"?, "tracestate"? (W3C, when tracing)}
    header, calls = unpack_calls(frames)        # [(call, items | MalformedMessage), …]
    frames = pack_replies({"load": …}, [(reply, results | None), …])   # reply: {"id", "ok", "error"?}
    header, replies = unpack_replies(frames)    # [(reply, results), …]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from service.items import BatchInfo, ItemResult, PreparedItem, SegmentResults
from service.wire.frames import Frames, MalformedMessage, item_arrays, items_from, pack

# What a call must carry besides its id: name → accepted types
CALL_FIELDS = {"model": str, "timeout_s": int | float, "items": list}


def pack_calls(calls: Sequence[tuple[dict, Sequence[PreparedItem]]]) -> Frames:
    described, arrays = [], []
    for call, items in calls:
        metas = []
        for item in items:
            meta, parts = item_arrays(item, len(arrays))
            metas.append(meta)
            arrays += parts
        described.append({**call, "items": metas})
    return pack({"op": "calls", "calls": described}, arrays)


def check_call(call: Any) -> dict:
    """One call of a `calls` message, checked against CALL_FIELDS; MalformedMessage (with its id) otherwise."""
    request_id = call.get("id") if isinstance(call, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        raise MalformedMessage("a call has no id (an integer or a string)")
    for name, kind in CALL_FIELDS.items():
        value = call.get(name)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise MalformedMessage(f"its call has no valid {name!r}", request_id)
    return call


def unpack_calls(header: dict, arrays: list) -> list[tuple[dict, list[PreparedItem]] | MalformedMessage]:
    """Each call with its items, or the MalformedMessage that says why it cannot be run (answered by id)."""
    unpacked: list = []
    for call in header["calls"]:
        try:
            checked = check_call(call)
            unpacked.append((checked, items_from(checked["items"], arrays)))
        except MalformedMessage as malformed:
            unpacked.append(malformed)
        except (KeyError, IndexError, TypeError, ValueError) as error:  # item layouts that disagree with arrays
            unpacked.append(MalformedMessage(f"its items: {error!r}", call["id"]))
    return unpacked


def _named(result: ItemResult) -> dict:
    """The result's arrays by field; a video's segments are fields too ("segments:fused" [G,D]…), which stack
    with the segments of other videos of as many segments."""
    named = {"probabilities": result.probabilities, "fused": result.fused}
    named |= {f"embedding:{m}": v for m, v in result.embeddings.items()}
    named |= {f"modality_probabilities:{m}": v for m, v in result.modality_probabilities.items()}
    segments = result.segments
    if segments is not None:
        named |= {f"segments:{name}": getattr(segments, name) for name in SEGMENT_FIELDS}
        named |= {f"segments:embedding:{slot}": v for slot, v in segments.embeddings.items()}
        named |= {f"segments:modality_probabilities:{slot}": v for slot, v in segments.modality_probabilities.items()}
    return named


SEGMENT_FIELDS = ("bounds", "probabilities", "fused", "present")  # SegmentResults' arrays (its dicts apart)


def _fields(named: dict, prefix: str) -> dict:
    return {name[len(prefix) :]: v for name, v in named.items() if name.startswith(prefix)}


def _segments(named: dict) -> SegmentResults | None:
    if "segments:bounds" not in named:
        return None
    arrays = [named[f"segments:{name}"] for name in SEGMENT_FIELDS]
    return SegmentResults(*arrays, _fields(named, "segments:embedding:"),
                          _fields(named, "segments:modality_probabilities:"))  # fmt: skip


def pack_replies(header: dict, replies: Sequence[tuple[dict, Sequence[ItemResult] | None]]) -> Frames:
    """The results of every reply stacked per field (one [N, D] array of fused embeddings, not N arrays):
    each result names its row of each stack. Fields of another shape (a second model) stack apart."""
    stacks: dict[tuple, list] = {}  # (field, dtype, shape) → its rows
    where: dict[tuple, int] = {}  # (field, dtype, shape) → its stack's place among the message's arrays
    described = []
    for reply, results in replies:
        metas = []
        for result in results or ():
            rows = {}
            for name, array in _named(result).items():
                key = (name, array.dtype.str, array.shape)
                if key not in stacks:
                    stacks[key], where[key] = [], len(stacks)
                rows[name] = [where[key], len(stacks[key])]
                stacks[key].append(array)
            batches = {name: [b.size, b.queue_s, b.infer_s] for name, b in result.batches.items()}
            metas.append({"modalities": result.modalities, "rows": rows, "batches": batches})
        described.append({**reply, "results": metas})
    return pack({**header, "replies": described}, [np.stack(rows) for rows in stacks.values()])


def _result(meta: dict, stacks: list) -> ItemResult:
    named = {name: stacks[stack][row] for name, (stack, row) in meta["rows"].items()}
    return ItemResult(
        meta["modalities"], named["probabilities"], named["fused"], _fields(named, "embedding:"),
        _fields(named, "modality_probabilities:"), {name: BatchInfo(*info) for name, info in meta["batches"].items()},
        _segments(named),
    )  # fmt: skip


def unpack_replies(header: dict, arrays: list) -> list[tuple[dict, list[ItemResult]]]:
    return [(reply, [_result(meta, arrays) for meta in reply.pop("results")]) for reply in header.pop("replies")]
