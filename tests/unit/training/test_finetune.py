"""--finetune-last N on a small real text dataset (MiniLM): only the last block moves, the checkpoint keeps
exactly the tuned tensors, and evaluation/export see what the tuned encoder computes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.config import TrainConfig
from training.data.features import collate, raw_inputs
from training.data.specs import default_preprocess
from training.data.splits import load_train_data
from training.export import trained_encoder
from training.model.backbones import build_backbone
from training.model.fused import load_checkpoint
from training.train import train

WORDS = {"small": ["one", "two", "three", "a few"], "large": ["ninety", "a thousand", "millions", "a great many"]}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    lines = []
    for i in range(48):
        label = "small" if i % 2 else "large"
        split = "train" if i < 32 else "val" if i < 40 else "test"
        lines.append({"id": f"t{i}", "split": split, "label": label, "text": f"{WORDS[label][i % 4]} items, #{i}"})
    (root / "data.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    cfg = TrainConfig(data=str(root / "data.jsonl"), cache_dir=str(root / "cache"), out_dir=str(root / "run"),
                      dim=16, hidden=16, epochs=2, batch_size=8, fusion="concat", finetune_last=1,
                      finetune_lr=1e-3, progress=False, compare_fusions=False, matryoshka_dims=[8])  # fmt: skip
    data = load_train_data(cfg)
    frozen_test = data.splits["test"].features["text"].clone()
    result = train(cfg, data, out_dir=root / "run")
    return cfg, data, result.model, frozen_test, root


def test_only_the_last_block_is_tuned_and_it_moved(tuned):
    _, _, model, _, _ = tuned
    state = model.backbone_state["text"]
    assert state and all(name.startswith("bert.encoder.layer.5.") for name in state)
    packaged = build_backbone("text").state_dict()
    assert any(not torch.equal(state[name], packaged[name]) for name in state)
    assert not hasattr(model, "backbones"), "live backbones are detached after training"


def test_features_after_tuning_come_from_the_tuned_backbone(tuned):
    _, data, model, frozen_test, _ = tuned
    examples = data.examples["test"]
    backbone = build_backbone("text", tuned=model.backbone_state["text"])
    with torch.no_grad():
        expected = backbone(*collate("text", [raw_inputs(e, "text", default_preprocess()) for e in examples]))
    got = data.splits["test"].features["text"]
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4)
    assert float((got - frozen_test).abs().max()) > 1e-3, "the tuned block changed the features"
    assert data.splits["test"].live is None and data.splits["train"].live is None


def test_checkpoint_and_export_encoder_carry_the_tuned_weights(tuned):
    _, data, model, _, root = tuned
    loaded, _ = load_checkpoint(root / "run" / "model.pt")
    for name, tensor in model.backbone_state["text"].items():
        assert torch.equal(loaded.backbone_state["text"][name], tensor), name
    encoder = trained_encoder(loaded, "text")
    example = data.examples["test"][0]
    with torch.no_grad():
        exported_math = encoder(*collate("text", [raw_inputs(example, "text", default_preprocess())]))
        trained_math = loaded.embed({"text": data.splits["test"].features["text"][:1]})["text"]
    np.testing.assert_allclose(exported_math.numpy(), trained_math.numpy(), atol=1e-5)


def test_evaluate_and_export_reload_the_tuned_features(tuned):
    cfg, data, model, _, _ = tuned
    reloaded = load_train_data(cfg, backbone_state=model.backbone_state)
    for name in ("train", "val", "test"):
        torch.testing.assert_close(reloaded.splits[name].features["text"], data.splits[name].features["text"])
