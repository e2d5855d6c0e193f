"""A video over the engine wire: its prepared VideoArrays cross as five arrays and are rebuilt engine-side, and
its result's SegmentResults come back bit for bit, stacked with the segments of videos of as many segments."""

from __future__ import annotations

import numpy as np
import orjson

from service.engine.pipeline import run_direct
from service.engine.video_run import VideoItem
from service.items import ItemResult, SegmentResults
from service.wire import calls as wire_calls
from service.wire import frames as wire
from tests.unit.engine.video_items import video_bundle, video_item


def assert_segments_equal(got: SegmentResults, sent: SegmentResults) -> None:
    for name in ("bounds", "probabilities", "fused", "present"):
        a, b = getattr(got, name), getattr(sent, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    for field in ("embeddings", "modality_probabilities"):
        a, b = getattr(got, field), getattr(sent, field)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in b), field


def test_a_video_and_its_segments_cross_the_wire(tmp_path):
    bundle = video_bundle(tmp_path)
    shapes = [{"frames": (2, 2, 1)}, {"frames": (1, 0, 2), "sound": (True, True, False)}, {"frames": (3, 1)}]
    items = [video_item(bundle, seed=seed, **shape) for seed, shape in enumerate(shapes)]
    frames = wire_calls.pack_calls([({"id": 1, "model": "vid", "version": "1", "timeout_s": 5.0}, items)])
    header = wire.read_header([bytes(f) for f in frames])
    ((_, got),) = wire_calls.unpack_calls(header, wire.arrays_of(header, [bytes(f) for f in frames]))
    for back, item in zip(got, items, strict=True):
        video = VideoItem.of(back, bundle.encoders).video  # the engine rebuilds the named tuple
        assert all(np.array_equal(a, b) for a, b in zip(video, item.arrays["video"], strict=True))
        assert video.segments == item.arrays["video"].segments
    sent = run_direct(bundle.encoders, bundle.fusion, got)
    sent.append(ItemResult(["text"], sent[0].probabilities, sent[0].fused, {}))  # no segments: stays None
    replies = wire_calls.pack_replies({"load": []}, [({"id": 1, "ok": True}, sent)])
    header = orjson.loads(bytes(replies[0]))
    ((_, results),) = wire_calls.unpack_replies(header, wire.arrays_of(header, [bytes(f) for f in replies]))
    for back, result in zip(results[:3], sent[:3], strict=True):
        assert_segments_equal(back.segments, result.segments)
        assert back.embeddings.keys() == result.embeddings.keys()
    assert results[3].segments is None
    # the two three-segment videos' fused rows travel as one [2,3,D] stack
    shapes = [spec[1] for spec in orjson.loads(bytes(replies[0]))["arrays"]]  # [dtype, shape, frame, offset]
    assert [2, 3, bundle.manifest.embedding_dim] in shapes
