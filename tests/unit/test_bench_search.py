"""bench/search.py: the byte counting on response bodies, recall@1 with ties, the similarity of each encoding, and
a --quick run through the real server on tiny bundles (with calibrated ranges, and without a joint_space block:
int8 refused and recorded, a dim it was not trained for measured with truncate=force)."""

from __future__ import annotations

import base64
import json

import numpy as np
import orjson
import pytest

from bench.search_data import Row, embedding_value_bytes, raw_bytes
from bench.search_metrics import (
    label_probabilities,
    pair_retrieval,
    similarity,
    to_ubinary,
)
from bench.search_stages import subset_items
from service.embedding_types import quantize
from service.joint_space import QuantizationRanges
from service.zero_shot import normalise
from tests.bundles import build_bundle, joint_space_for, sample_inputs
from training.metrics import label_recall1_ties, label_recall_at, recall1_ties, recall_at

LABELS = ("zero", "one", "two", "three")
LABEL_MODALITIES = ("image", "text", "audio")


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    return normalise(np.random.default_rng(seed).normal(size=(n, d)))


def test_embedding_value_bytes_counts_each_value_as_the_server_wrote_it():
    values = [[0.25, -0.5, 1e-07], "AAAAPw==", {"int8": [-128, 5, 127]}, {"binary": "gA=="}]
    for dumps in (orjson.dumps, lambda o: json.dumps(o, separators=(", ", ": ")).encode()):
        body = dumps({"object": "list", "data": [{"object": "embedding", "index": i, "embedding": v}
                                                 for i, v in enumerate(values)], "model": "m:1"})  # fmt: skip
        assert embedding_value_bytes(body) == [len(dumps(v)) for v in values]


def test_raw_bytes_of_each_type():
    assert [raw_bytes(kind, 64) for kind in ("float", "int8", "uint8", "binary", "ubinary")] == [256, 64, 64, 8, 8]
    assert raw_bytes("binary", 4) == 1


def test_recall_without_ties_is_training_metrics_recall_at_1_and_ties_are_shared_out():
    sim = unit_rows(40, 16) @ unit_rows(40, 16, seed=1).T
    labels = np.arange(40) % 4
    assert recall1_ties(sim) == recall_at(sim, 1) and label_recall1_ties(sim, labels) == label_recall_at(sim, labels, 1)
    tied = np.ones((8, 8))
    assert recall1_ties(tied) == pytest.approx(1 / 8)  # recall_at counts a tie with the match as a hit: 1.0
    assert label_recall1_ties(tied, np.arange(8) % 2) == pytest.approx(0.5)


def test_similarity_per_encoding():
    query, gallery = unit_rows(6, 16), unit_rows(9, 16, seed=2)
    ranges = QuantizationRanges(min=[-1.0] * 16, max=[1.0] * 16)
    cosine = similarity(query, gallery, "float")
    int8 = similarity(quantize(query, "int8", ranges), quantize(gallery, "int8", ranges), "int8", ranges)
    assert np.abs(int8 - cosine).max() < 0.03
    binary_q, binary_g = quantize(query, "binary"), quantize(gallery, "binary")
    assert np.array_equal(to_ubinary(binary_q), quantize(query, "ubinary"))
    equal_bits = ((query[:, None, :] > 0) == (gallery[None, :, :] > 0)).sum(axis=-1)
    assert np.array_equal(similarity(binary_q, binary_g, "binary"), equal_bits)
    codes = similarity(quantize(query, "int8", ranges), quantize(gallery, "int8", ranges), "int8_codes")
    assert codes.dtype == np.int32 and np.corrcoef(codes.ravel(), cosine.ravel())[0, 1] > 0.99


def test_pair_retrieval_uses_the_rows_having_both_modalities():
    vectors = unit_rows(6, 8)
    codes = {"image": {i: vectors[i] for i in range(6)}, "text": {i: vectors[i] for i in (0, 2, 3, 5)}}
    pairs = pair_retrieval(codes, np.array([0, 1, 0, 1, 0, 1]), "float")
    assert set(pairs) == {"image->text", "text->image"}
    assert pairs["image->text"] == {"n": 4, "recall@1": 1.0, "label_recall@1": 1.0}


def test_subset_items_and_label_probabilities():
    rows = [Row("a", 0, {"text": "x", "image": b"p"}), Row("b", 1, {"audio": b"w"})]
    assert subset_items(rows) == [(0, ("image", "text")), (0, ("image",)), (0, ("text",)), (1, ("audio",))]
    answer = [{"label": "two", "score": 0.7}, {"label": "zero", "score": 0.2}, {"label": "one", "score": 0.1}]
    assert label_probabilities(answer, ["zero", "one", "two"]).tolist() == pytest.approx([0.2, 0.1, 0.7])


def write_dataset(root, rows: int = 30):
    """A tridigits-shaped dataset.jsonl (test and train rows, mixed modalities) with media beside it."""
    (root / "media").mkdir(parents=True)
    lines = []
    for i in range(rows):
        sample, label = sample_inputs(i), LABELS[i % 4]
        row = {
            "id": f"r{i}",
            "split": "test" if i % 5 else "train",
            "label": label,
            "text": f"{label} {sample['text']}",
        }
        for modality, suffix, keep in (("image", "png", i % 3), ("audio", "wav", i % 2)):
            if keep:
                (root / f"media/{i}.{suffix}").write_bytes(sample[modality])
                row[modality] = f"media/{i}.{suffix}"
        lines.append(json.dumps(row))
    (root / "dataset.jsonl").write_text("\n".join(lines) + "\n")


def quick_run(tmp_path, joint_space, dims: str) -> dict:
    from bench.search import main

    build_bundle(tmp_path / "models", "tiny", "1", dim=8, labels=LABELS, joint_space=joint_space)
    write_dataset(tmp_path / "data")
    argv = ["--model-dir", str(tmp_path / "models"), "--model", "tiny", "--data", str(tmp_path / "data"),
            "--dims", dims, "--quick", "--documents", "20", "--out", str(tmp_path / "out")]  # fmt: skip
    result = main(argv)
    written = json.loads((tmp_path / "out" / "search.json").read_text())
    assert written["command"].startswith("python -m bench.search --model-dir") and written["rows"] == result["rows"]
    assert written["machine"]["cpu_model"] and len(written["bundle"]["manifest_digest"]) == 64
    return written


@pytest.mark.slow
def test_quick_run_through_the_server_on_a_bundle_with_a_joint_space(tmp_path):
    result = quick_run(tmp_path, joint_space_for(8, matryoshka_dims=(4,)), "4,8")
    wire = {(r["dim"], r["type"], r["encoding_format"]): r for r in result["wire"]}
    assert wire[(8, "float", "base64")]["embedding_bytes_per_item"] == len(base64.b64encode(bytes(32))) + 2
    assert wire[(8, "binary", "base64")]["embedding_bytes_per_item"] == len('{"binary":"AA=="}')
    assert wire[(4, "float", "float")]["body_bytes_per_item"] > wire[(4, "float", "base64")]["body_bytes_per_item"]
    for dim in ("4", "8"):
        at = result["retrieval"][dim]
        assert at["refusals"] == {} and not at["forced"]
        assert set(at["float"]["pairs"]) == {f"{a}->{b}" for a in LABEL_MODALITIES for b in LABEL_MODALITIES if a != b}
        assert 0 <= at["binary"]["mean_label_recall@1"] <= 1 and "int8" in at and "int8_codes" in at
    zero = result["zero_shot"]
    assert zero["calibrated"] is True and zero["temperature"] == pytest.approx(0.05) and zero["n"] == result["rows"]
    assert {"image", "text", "audio", "image+text+audio"} <= set(zero["subsets"]) and 0 <= zero["ece"] <= 1
    rerank = result["rerank"]
    assert rerank["max_score_difference"] < 1e-4, rerank
    assert set(rerank["paths"]) == {"rerank", "embeddings+numpy"}
    assert all(p["documents"] == 2 * 20 and p["documents_per_s"] > 0 for p in rerank["paths"].values())


@pytest.mark.slow
def test_quick_run_records_refusals_on_a_bundle_without_a_joint_space(tmp_path):
    result = quick_run(tmp_path, None, "4,8")
    wire = {(r["dim"], r["type"], r["encoding_format"]): r for r in result["wire"]}
    assert wire[(8, "int8", "float")]["refused"] == 422 and "ranges" in wire[(8, "int8", "float")]["message"]
    assert wire[(4, "float", "float")]["forced"] and wire[(4, "float", "float")]["items"] == 4
    assert not wire[(8, "float", "float")]["forced"]
    forced, full = result["retrieval"]["4"], result["retrieval"]["8"]
    assert forced["forced"] and forced["refusals"]["dimensions"]["refused"] == 422
    assert not full["forced"] and full["refusals"]["int8"]["refused"] == 422
    for at in (forced, full):
        assert "float" in at and "binary" in at and "int8" not in at
    assert result["zero_shot"]["calibrated"] is False


def test_the_cards_search_means_are_kept_without_their_pairs():
    from bench.search import card_figures
    from bench.search_report import card_lines

    pair = {"n": 3, "recall@1": 0.5, "label_recall@1": 0.75}
    at = {"recall@1": 0.5, "label_recall@1": 0.75, "pairs": {"image->text": pair}}
    metrics = {"search": {"retrieval": {"64": at, "256": at}, "zero_shot": {"text": {"n": 3, "accuracy": 0.5}},
                          "encodings": {"64": {"float": at, "int8": at, "binary": at | {"bytes": 8}}}}}  # fmt: skip
    card = card_figures(metrics)
    assert card["retrieval"]["64"] == {"recall@1": 0.5, "label_recall@1": 0.75}
    assert card["encodings"]["64"]["binary"] == {"recall@1": 0.5, "label_recall@1": 0.75}
    assert card_lines(card)[1:] == ["- 64-d: float 0.750, int8 0.750, binary 0.750", "- 256-d: float 0.750"]
    assert card_figures({}) is None
