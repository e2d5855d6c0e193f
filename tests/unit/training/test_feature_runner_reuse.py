"""An exported backbone checked against torch once is trusted by later passes with the same onnxruntime: ORT from
the first batch, one session per process, and a stale or unreadable mark sends it back to the torch check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.data.dataset import Example
from training.data.features import collate, decoded_inputs
from training.data.onnx_runner import FeatureRunner
from training.model.backbones import build_backbone


@pytest.fixture(scope="module")
def batch():
    examples = [Example(id=f"t{i}", split="train", label="a", text=f"item number {i} of a few") for i in range(4)]
    return collate("text", decoded_inputs(examples, ["text"])["text"])


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("text").eval()


def _no_torch(*inputs):
    raise AssertionError("torch ran although the exported backbone was verified")


def test_a_verified_export_skips_the_torch_batch_and_shares_its_session(tmp_path, backbone, batch):
    path = tmp_path / "backbone.onnx"
    first = FeatureRunner(backbone, "text", path)
    with torch.no_grad():
        reference = first(*batch)  # exports, checks ORT against torch, marks it
    assert first.engine == "onnx" and path.with_name("backbone.onnx.verified.json").is_file()
    second = FeatureRunner(backbone, "text", path)
    assert second.engine == "onnx" and second.ort is first.ort
    second.torch_run = _no_torch
    np.testing.assert_allclose(second(*batch).numpy(), reference.numpy(), atol=1e-3)


@pytest.mark.parametrize("mark", ['{"onnxruntime": "0.0.1", "device": "cpu"}', "not json", "[1, 2]"])
def test_a_stale_or_broken_mark_is_checked_again(tmp_path, backbone, batch, mark):
    path = tmp_path / "backbone.onnx"
    with torch.no_grad():
        FeatureRunner(backbone, "text", path)(*batch)
    path.with_name("backbone.onnx.verified.json").write_text(mark)
    runner = FeatureRunner(backbone, "text", path)
    assert runner.engine == "undecided"
    with torch.no_grad():
        runner(*batch)
    assert runner.engine == "onnx"
    assert json.loads(path.with_name("backbone.onnx.verified.json").read_text())["device"] == "cpu"
