"""The engine wire format (service/wire/frames.py): prepared items and results survive a real ZeroMQ round trip
bit for bit, arrays are received as views of the message frames (no copy; small ones share one frame), and a
malformed message is refused."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from service.items import BatchInfo, ItemResult, PreparedItem
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
    a.send_multipart(wire.pack_results({"id": 7}, sent), copy=False)
    header, got = wire.unpack_results(b.recv_multipart(copy=False))
    assert header == {"id": 7}
    for g, s in zip(got, sent, strict=True):
        assert g.modalities == s.modalities and g.batches == s.batches
        assert np.array_equal(g.probabilities, s.probabilities) and np.array_equal(g.fused, s.fused)
        assert g.embeddings.keys() == s.embeddings.keys()
        assert g.modality_probabilities.keys() == s.modality_probabilities.keys()
        for key, value in s.embeddings.items():
            assert np.array_equal(g.embeddings[key], value)
    assert got[0].queue_s == sent[0].queue_s and got[0].infer_s == sent[0].infer_s


def test_a_message_whose_frames_do_not_match_its_header_is_refused():
    frames = wire.pack({"id": 1}, [np.zeros(3, np.float32), np.ones(2, np.int64), np.ones(20_000, np.float32)])
    with pytest.raises(ValueError, match="frames it does not have"):
        wire.unpack(frames[:2])  # the large array's frame is missing
    with pytest.raises(ValueError, match="does not fit frame 1"):
        wire.unpack([frames[0], bytes(frames[1])[:20], frames[2]])  # the small arrays' frame cut short
    header, arrays = wire.unpack([bytes(f) for f in frames])  # plain bytes work too (e.g. after a copy)
    assert header == {"id": 1} and arrays[1].tolist() == [1, 1]
