"""Training on tiny synthetic features: deterministic, learns, modality dropout keeps a modality, the
checkpoint round-trips, evaluation covers every subset, the fusion graph exports; config loading."""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import pytest
import torch

from training.config import TrainConfig, add_config_arguments, config_from_args, load_config
from training.data.splits import Split, TrainData
from training.evaluate import evaluate
from training.export_encoders import ort_session
from training.export_fusion import export_fusion
from training.metrics import recall_at
from training.model.fused import load_checkpoint
from training.train import modality_dropout, predict, train

MODALITIES = ["image", "text", "audio"]
DIMS = {"image": 24, "text": 12, "audio": 16}
CLASSES = 4


def synthetic_split(n: int, seed: int) -> Split:
    """Features = a class prototype per modality + noise; each item lacks each modality with p = 0.3."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    protos = {m: np.random.default_rng(100 + i).normal(size=(CLASSES, d)) for i, (m, d) in enumerate(DIMS.items())}
    present = (rng.random((n, 3)) > 0.3).astype(np.float32)
    present[present.sum(1) == 0, 0] = 1.0
    features = {}
    for i, m in enumerate(MODALITIES):
        values = protos[m][labels] + rng.normal(0, 1.5, (n, DIMS[m]))
        features[m] = torch.from_numpy((values * present[:, [i]]).astype(np.float32))
    ids = [f"s{seed}-{i}" for i in range(n)]
    return Split(features, torch.from_numpy(present), torch.from_numpy(labels), ids)


@pytest.fixture(scope="module")
def data() -> TrainData:
    splits = {"train": synthetic_split(160, 0), "val": synthetic_split(40, 1), "test": synthetic_split(60, 2)}
    return TrainData(MODALITIES, [str(c) for c in range(CLASSES)], splits)


def config(**overrides) -> TrainConfig:
    values = dict(dim=16, hidden=32, heads=2, epochs=2, batch_size=32, progress=False, fusion="attention",
                  matryoshka_dims=[4, 8])  # fmt: skip
    return TrainConfig(**(values | overrides))


def test_training_is_deterministic(data, tmp_path):
    first = train(config(), data, out_dir=tmp_path / "a")
    second = train(config(), data)
    for (name, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert [r["train_loss"] for r in first.history] == [r["train_loss"] for r in second.history]
    assert {p.name for p in (tmp_path / "a").iterdir()} >= {"model.pt", "history.json", "training_curves.png"}
    other = train(config(seed=1), data)
    assert not torch.equal(other.model.projections["image"].weight, first.model.projections["image"].weight)


@pytest.mark.parametrize("fusion", ["concat", "gated", "attention", "late"])
def test_each_fusion_learns(data, fusion):
    result = train(config(fusion=fusion, epochs=15), data)
    logits, _, _ = predict(result.model, data.splits["test"])
    accuracy = (logits.argmax(1) == data.splits["test"].labels).float().mean().item()
    assert accuracy > 0.6  # chance is 0.25
    assert result.best_val_accuracy == max(r["val_accuracy"] for r in result.history)


def test_early_stopping_and_best_checkpoint(data, tmp_path):
    result = train(config(epochs=40, patience=2, lr=1e-5), data, out_dir=tmp_path)
    assert len(result.history) < 40  # a tiny learning rate plateaus quickly
    model, blob = load_checkpoint(tmp_path / "model.pt")
    assert blob["best_epoch"] == result.best_epoch and blob["labels"] == data.labels
    split = data.splits["val"]
    assert torch.allclose(predict(model, split)[0], predict(result.model, split)[0])


def test_modality_dropout_keeps_one_present_modality():
    g = torch.Generator().manual_seed(0)
    present = (torch.rand(500, 3, generator=g) > 0.4).float()
    present[present.sum(1) == 0, 1] = 1.0
    dropped = modality_dropout(present, 0.9, g)
    assert (dropped.sum(1) >= 1).all()
    assert (dropped <= present).all()  # never adds an absent modality
    assert (dropped.sum(1) == 1).float().mean() > 0.8  # p = 0.9: almost every row is down to one


def test_evaluate_covers_every_subset(data):
    model = train(config(epochs=3), data).model
    report = evaluate(model, data)
    assert list(report["subsets"]) == [
        "image", "text", "audio", "image+text", "image+audio", "text+audio", "image+text+audio",
    ]  # fmt: skip
    assert set(report["retrieval"]) == {f"{a}->{b}" for a in MODALITIES for b in MODALITIES if a != b}
    assert np.asarray(report["confusion"]).sum() == len(data.splits["test"])


def test_recall_at_k():
    sim = np.array([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.1, 0.2, 0.3]])
    assert recall_at(sim, 1) == pytest.approx(2 / 3)  # row 1's match is beaten by column 0
    assert recall_at(sim, 2) == 1.0


def test_trained_fusion_exports(data, tmp_path):
    model = train(config(fusion="gated"), data).model
    spec, diff = export_fusion(model, tmp_path / "fusion.onnx")
    assert diff <= 1e-5 and spec.modalities == MODALITIES
    split = data.splits["test"]
    _, _, embeddings = predict(model, split)
    feeds = {f"{m}_embedding": (embeddings[m] * split.present[:, [i]]).numpy() for i, m in enumerate(MODALITIES)}
    logits = ort_session(tmp_path / "fusion.onnx").run(["logits"], feeds | {"present": split.present.numpy()})[0]
    assert np.abs(logits - predict(model, split)[0].numpy()).max() <= 1e-4


def test_config_toml_and_cli_overrides():
    cfg = load_config("tridigits.toml")
    assert cfg.name == "tridigits" and cfg.version == ""  # export publishes the next free version
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--config", "tridigits", "--epochs", "3", "--fusion", "gated", "--progress", "false"])
    cfg = config_from_args(args)
    assert (cfg.epochs, cfg.fusion, cfg.progress, cfg.lr) == (3, "gated", False, load_config("tridigits").lr)
    with pytest.raises(ValueError, match="fusion"):
        dataclasses.replace(cfg, fusion="sum")


def test_bundle_tokenizer_has_padding_disabled(tmp_path):
    from tokenizers import Tokenizer

    from training.data.specs import default_preprocess
    from training.export import write_tokenizer

    specs = default_preprocess()
    write_tokenizer(specs, tmp_path / "tokenizer.json")
    saved = json.loads((tmp_path / "tokenizer.json").read_text())
    assert saved["padding"] is None  # MiniLM ships Fixed-128 padding: the server must not pad to 128
    assert saved["truncation"]["max_length"] == specs.text.max_length
    assert len(Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode("seven").ids) == 3  # [CLS] seven [SEP]


def test_golden_items_cover_distinct_subsets_and_items():
    from pathlib import Path

    from training.data.dataset import Example
    from training.export import pick_golden

    examples = [
        Example("a", "test", "1", image=Path("a.png"), text="one", audio=Path("a.wav")),
        Example("b", "test", "2", image=Path("b.png"), audio=Path("b.wav")),
        Example("c", "test", "3", text="three"),
        Example("d", "test", "4", image=Path("d.png"), text="four", audio=Path("d.wav")),
    ]
    chosen = pick_golden(examples, MODALITIES, 4)
    assert [s for _, s in chosen] == [("image", "text", "audio"), ("image",), ("text",), ("audio",)]
    assert len({e.id for e, _ in chosen}) == 4
    assert all(all(getattr(e, m) is not None for m in s) for e, s in chosen)
