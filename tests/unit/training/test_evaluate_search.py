"""The search figures' maths on tiny data: calibration ranges, the zero-shot temperature fit, retrieval per
encoding (ties counted fairly), bytes on the wire, and the report of a tiny trained model."""

from __future__ import annotations

import numpy as np
import pytest

from service.embedding_types import quantize, truncate
from service.joint_space import QuantizationRanges
from service.zero_shot import normalise
from tests.unit.training.test_train_export import MODALITIES, config, data  # noqa: F401 (the fixture)
from training.evaluate import evaluate
from training.evaluate_search import calibration_ranges, fit_zero_shot, joint_space_block, similarity, wire_bytes
from training.metrics import label_recall1_ties, recall1_ties
from training.model_card import manifest_metrics
from training.model_card_search import search_section
from training.train import predict, train


def rows(n: int, d: int, seed: int) -> np.ndarray:
    return normalise(np.random.default_rng(seed).normal(size=(n, d)))


def test_ties_count_in_expectation():
    sim = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0], [3.0, 3.0, 3.0]])
    assert recall1_ties(sim) == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)
    labels = np.array([0, 1, 0])
    assert label_recall1_ties(sim, labels) == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)


def test_wire_bytes():
    assert wire_bytes(256, "float") == {"bytes": 1024, "base64_chars": 1368}
    assert wire_bytes(64, "int8") == {"bytes": 64, "base64_chars": 88}
    assert wire_bytes(64, "binary") == {"bytes": 8, "base64_chars": 12}
    assert wire_bytes(12, "binary")["bytes"] == 2  # the last byte zero-padded


def test_encodings_rank_like_float():
    queries, gallery = rows(30, 64, 1), rows(30, 64, 2)
    gallery[:10] = normalise(queries[:10] + 0.05 * rows(10, 64, 3))  # ten near-duplicates
    both = np.concatenate([queries, gallery])  # ranges from the data itself, as export calibrates them
    ranges = {"64": QuantizationRanges(min=both.min(0).tolist(), max=both.max(0).tolist())}
    float_top = similarity(queries, gallery, "float", None).argmax(1)[:10]
    int8 = similarity(queries, gallery, "int8", ranges["64"])
    assert np.abs(int8 - similarity(queries, gallery, "float", None)).max() < 0.05
    assert (int8.argmax(1)[:10] == float_top).all()
    bits = similarity(queries, gallery, "binary", None)
    assert bits.shape == (30, 30) and bits.max() <= 64
    assert bits[0, 0] == 64 - np.sum((queries[0] > 0) != (gallery[0] > 0))


def test_calibration_ranges_cover_every_slot_and_the_fused_embedding(data):  # noqa: F811
    model = train(config(epochs=1), data).model
    ranges = calibration_ranges(model, data.splits["train"], [4, 16])
    assert set(ranges) == {"4", "16"} and len(ranges["4"].min) == 4 and len(ranges["16"].max) == 16

    train_split = data.splits["train"]
    _, fused, emb = predict(model, train_split)
    slots = [emb[m][train_split.present[:, i] > 0.5].numpy() for i, m in enumerate(MODALITIES)]
    for dim in (4, 16):
        points = truncate(np.concatenate([fused.numpy(), *slots]), dim)
        assert ranges[str(dim)].min == points.min(0).tolist() and ranges[str(dim)].max == points.max(0).tolist()
    without_fused = truncate(np.concatenate(slots), 4)
    assert ranges["4"].max != without_fused.max(0).tolist() or ranges["4"].min != without_fused.min(0).tolist()


def test_fit_zero_shot_recovers_a_known_temperature():
    labels = rows(5, 16, 0)
    rng = np.random.default_rng(1)
    items = rows(2000, 16, 2)
    cosines = items @ labels.T
    truth = np.array([rng.choice(5, p=np.exp(c / 0.05) / np.exp(c / 0.05).sum()) for c in cosines])
    fit = fit_zero_shot(items, truth, labels)
    assert fit.temperature == pytest.approx(0.05, rel=0.15)
    assert fit.n == 2000 and fit.ece < fit.ece_uncalibrated and 0 <= fit.accuracy <= 1
    assert fit_zero_shot(items[:0], truth[:0], labels) is None


def test_search_report_of_a_tiny_model(data):  # noqa: F811
    model = train(config(epochs=2), data).model
    vectors = normalise(np.random.default_rng(0).normal(size=(len(data.labels), model.dim))).astype(np.float32)
    report = evaluate(model, data, matryoshka_dims=[4, 8], label_vectors=vectors)
    search = report["search"]
    assert list(search["retrieval"]) == ["4", "8", "16"] and list(search["encodings"]) == ["4", "16"]
    pairs = search["retrieval"]["16"]["pairs"]
    assert set(pairs) == {f"{a}->{b}" for a in MODALITIES for b in MODALITIES if a != b}
    for pair, r in pairs.items():  # the full dim's float figures are evaluate's own retrieval
        assert r["recall@1"] == pytest.approx(report["retrieval"][pair]["recall@1"])
    assert search["encodings"]["16"]["binary"]["bytes"] == 2
    assert set(search["zero_shot"]) == set(report["subsets"])
    assert search["zero_shot"]["image"]["classifier_accuracy"] == report["subsets"]["image"]["accuracy"]
    assert search["zero_shot_fit"]["temperature"] > 0
    space = joint_space_block(model, data, [4, 8], vectors)
    assert set(space.quantization) == {"4", "8", "16"} and space.zero_shot.split == "val"
    assert joint_space_block(model, data, [], None).zero_shot is None
    card = "\n".join(search_section(search))
    assert "label R@1 4" in card and "| 16 | binary | 2 |" in card and "zero-shot accuracy" in card
    assert manifest_metrics({"evaluation": report})["search"] is search
    assert quantize(vectors, "ubinary").shape == (len(data.labels), 2)
