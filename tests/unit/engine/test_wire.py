"""The engine wire format (service/wire/frames.py): prepared items and results survive a real ZeroMQ round trip
bit for bit, arrays are received as views of the message frames (no copy; small ones share one frame), and a
malformed message is refused."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import zmq

from service.items import BatchInfo, ItemResult, PreparedItem
from service.wire import calls as wire_calls
from service.wire import frames as wire


def items() -> list[PreparedItem]:
    rng = np.random.default_rng(0)
    image = rng.standard_normal((3, 224, 224), dtype=np.float32)
    text = (rng.integers(0, 30_000, 17).astype(np.int64), np.ones(17, np.int64))
    audio = rng.standard_normal((80, 301), dtype=np.float32)
    return [
        PreparedItem({"image": image, "text": text, "audio": audio}, decode_s=0.004),
        PreparedItem({"text": (text[0][:5].copy(), text[1][:5].copy())}, decode_s=0.0001),
        PreparedItem({"image": np.asfortranarray(image[0:3, :10, :10])}),  # not C-contiguous: sent as one
    ]


def results() -> list[ItemResult]:
    rng = np.random.default_rng(1)
    unit = rng.standard_normal(256).astype(np.float32)
    return [
        ItemResult(["image", "text"], np.full(10, 0.1, np.float32), unit, {"image": unit, "text": -unit},
                   {"image": np.full(10, 0.1, np.float32)}, {"image": BatchInfo(8, 0.001, 0.02),
                                                             "fusion": BatchInfo(3, 0.0, 0.001)}),
        ItemResult(["audio"], np.eye(10, dtype=np.float32)[3], unit, {"audio": unit}),
    ]  # fmt: skip


@pytest.fixture
def pair():
    context = zmq.Context()
    a, b = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    a.bind("inproc://wire-test")
    b.connect("inproc://wire-test")
    yield a, b
    a.close(linger=0)
    b.close(linger=0)
    context.term()


def assert_items_equal(got: list[PreparedItem], sent: list[PreparedItem]) -> None:
    assert len(got) == len(sent)
    for g, s in zip(got, sent, strict=True):
        assert g.modalities == s.modalities and g.decode_s == s.decode_s
        for modality in s.modalities:
            parts = s.arrays[modality] if isinstance(s.arrays[modality], tuple) else (s.arrays[modality],)
            back = g.arrays[modality] if isinstance(g.arrays[modality], tuple) else (g.arrays[modality],)
            assert isinstance(g.arrays[modality], tuple) == isinstance(s.arrays[modality], tuple)
            for x, y in zip(back, parts, strict=True):
                assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)


def test_items_cross_a_socket_bit_for_bit_as_views_of_the_frames(pair):
    a, b = pair
    sent = items()
    a.send_multipart(wire.pack_items({"id": 7, "model": "tiny", "version": "1"}, sent), copy=False)
    frames = b.recv_multipart(copy=False)
    header, got = wire.unpack_items(frames)
    assert header == {"id": 7, "model": "tiny", "version": "1"}
    assert_items_equal(got, sent)
    image = got[0].arrays["image"]
    assert not image.flags["OWNDATA"]  # a view of the received frame: nothing was copied out of it
    assert np.shares_memory(image, np.frombuffer(frames[2].buffer, np.uint8))
    # header, the small arrays' frame, then one frame per large array: the 224 px image and the spectrogram
    assert len(frames) == 1 + 1 + 2
    tokens = got[1].arrays["text"][0]
    assert np.shares_memory(tokens, np.frombuffer(frames[1].buffer, np.uint8))  # small: a view of the shared frame


def test_results_cross_a_socket_bit_for_bit(pair):
    a, b = pair
    sent = results()
    a.send_multipart(wire_calls.pack_replies({"load": []}, [({"id": 7, "ok": True}, sent)]), copy=False)
    frames = b.recv_multipart(copy=False)
    header = orjson.loads(frames[0].bytes)
    ((reply, got),) = wire_calls.unpack_replies(header, wire.arrays_of(header, frames))
    assert reply == {"id": 7, "ok": True} and header == {"load": []}
    for g, s in zip(got, sent, strict=True):
        assert g.modalities == s.modalities and g.batches == s.batches
        assert np.array_equal(g.probabilities, s.probabilities) and np.array_equal(g.fused, s.fused)
        assert g.embeddings.keys() == s.embeddings.keys()
        assert g.modality_probabilities.keys() == s.modality_probabilities.keys()
        for key, value in s.embeddings.items():
            assert np.array_equal(g.embeddings[key], value)
        for key, value in s.modality_probabilities.items():
            assert np.array_equal(g.modality_probabilities[key], value)
    assert got[0].queue_s == sent[0].queue_s and got[0].infer_s == sent[0].infer_s


def test_a_message_whose_frames_do_not_match_its_header_is_refused():
    frames = wire.pack({"id": 1}, [np.zeros(3, np.float32), np.ones(2, np.int64), np.ones(20_000, np.float32)])
    with pytest.raises(ValueError, match="frames it does not have"):
        wire.unpack(frames[:2])  # the large array's frame is missing
    with pytest.raises(ValueError, match="does not fit frame 1"):
        wire.unpack([frames[0], bytes(frames[1])[:20], frames[2]])  # the small arrays' frame cut short
    header, arrays = wire.unpack([bytes(f) for f in frames])  # plain bytes work too (e.g. after a copy)
    assert header == {"id": 1} and arrays[1].tolist() == [1, 1]


def test_many_calls_and_their_replies_cross_in_one_message_each(pair):
    a, b = pair
    sent = items()
    calls_out = [({"id": 1, "model": "tiny", "version": "1", "timeout_s": 5.0}, sent[:2]),
                 ({"id": 2, "model": "tiny", "version": None, "timeout_s": 2.5}, sent[2:])]  # fmt: skip
    a.send_multipart(wire_calls.pack_calls(calls_out), copy=False)
    frames = b.recv_multipart(copy=False)
    header = wire.read_header(frames)
    got = wire_calls.unpack_calls(header, wire.arrays_of(header, frames))
    assert [call["id"] for call, _ in got] == [1, 2] and got[1][0]["timeout_s"] == 2.5
    assert_items_equal(got[0][1], sent[:2])
    assert_items_equal(got[1][1], sent[2:])
    other_model = ItemResult(
        ["text"], np.ones(3, np.float32), np.zeros(8, np.float32), {"text": np.zeros(8, np.float32)}
    )
    replies = [({"id": 1, "ok": True}, results()), ({"id": 2, "ok": False, "error": {"status": 504}}, None),
               ({"id": 3, "ok": True}, [other_model])]  # fmt: skip
    b.send_multipart(wire_calls.pack_replies({"load": []}, replies), copy=False)
    frames = a.recv_multipart(copy=False)
    header = orjson.loads(frames[0].bytes)
    back = wire_calls.unpack_replies(header, wire.arrays_of(header, frames))
    assert [reply["id"] for reply, _ in back] == [1, 2, 3] and back[1][1] == [] and header["load"] == []
    for g, s in zip(back[0][1], results(), strict=True):
        assert g.modalities == s.modalities and g.batches == s.batches and np.array_equal(g.fused, s.fused)
        assert all(np.array_equal(g.embeddings[k], v) for k, v in s.embeddings.items())
    assert back[2][1][0].probabilities.shape == (3,)  # another model's shapes stack apart


def test_a_call_that_cannot_be_read_is_named_by_its_id():
    header = {"op": "calls", "calls": [{"id": 5}, {"id": 6, "model": "m", "timeout_s": 1, "items": [{"layout": {
        "text": [0, 2, True]}, "decode_s": 0.0}]}, {"model": "m"}]}  # fmt: skip
    got = wire_calls.unpack_calls(header, [])
    assert [(m.request_id, "model" in m.reason or "items" in m.reason) for m in got[:2]] == [(5, True), (6, True)]
    assert got[2].request_id is None
