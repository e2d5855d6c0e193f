"""Device plumbing for training: resolving --device, ORT providers, features on an explicit device, the decode
pool (same features, same order as decoding serially), and live fine-tuning features on the backbone's device."""

from __future__ import annotations

import json
import threading

import numpy as np
import onnxruntime
import pytest
import torch

from training.data.dataset import load_dataset
from training.data.decode_pool import decoded_chunks, default_workers
from training.data.features import collate, decoded_inputs, extract_features
from training.data.onnx_runner import FeatureRunner, OrtFeatures
from training.device import autocast, device_problem, ort_providers, resolve_device
from training.errors import UserError
from training.finetune import LiveFeatures
from training.model.backbones import build_backbone

NO_GPU = not torch.cuda.is_available()
HAS_CUDA_EP = "CUDAExecutionProvider" in onnxruntime.get_available_providers()


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    root = tmp_path_factory.mktemp("device")
    words = ["one", "twenty two", "a great many things", "three", "nine hundred and ninety nine items here"]
    lines = [{"id": f"t{i}", "split": "train", "label": str(i % 2), "text": f"{words[i % 5]} #{i}"} for i in range(40)]
    (root / "data.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return load_dataset(root / "data.jsonl")


@pytest.fixture(scope="module")
def text_backbone():
    return build_backbone("text").eval()


def test_resolve_device_cpu_and_spelling():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cpu" if NO_GPU else "cuda")
    assert device_problem("cuda:1") is None
    assert "cuda:N" in device_problem("gpu")


@pytest.mark.skipif(not NO_GPU, reason="checks the message where no GPU is visible")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_cuda_without_gpu_is_a_user_error(spec):
    with pytest.raises(UserError, match="no CUDA GPU is visible.*--device cpu"):
        resolve_device(spec)


def test_ort_providers():
    assert ort_providers(torch.device("cpu")) == ["CPUExecutionProvider"]
    assert ort_providers(torch.device("cuda", 1)) == [
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]


@pytest.mark.skipif(HAS_CUDA_EP, reason="checks the fallback where onnxruntime lacks the CUDA EP")
def test_cuda_features_without_cuda_ep_fall_back_to_torch(tmp_path, texts, text_backbone):
    inputs = collate("text", decoded_inputs(texts[:4], ["text"])["text"])
    with pytest.raises(RuntimeError, match="no CUDAExecutionProvider"):
        OrtFeatures(tmp_path / "missing.onnx", "text", device=torch.device("cuda"))
    runner = FeatureRunner(text_backbone, "text", tmp_path / "backbone.onnx", device=torch.device("cuda"))
    with torch.no_grad(), pytest.warns(UserWarning, match="ONNX Runtime unavailable.*CUDAExecutionProvider"):
        runner(*inputs)  # the backbone stays on the CPU here: torch answers where it is
    assert runner.engine == "torch"


def test_explicit_cpu_and_decode_pool_give_todays_features(texts, text_backbone):
    today = extract_features(texts, "text", text_backbone, None, batch_size=2, progress=False)  # 3 chunks of 16
    explicit = extract_features(texts, "text", text_backbone, None, batch_size=2, progress=False,
                                device=torch.device("cpu"), decode_workers=0)  # fmt: skip
    pooled = extract_features(texts, "text", text_backbone, None, batch_size=2, progress=False, decode_workers=3)
    assert today.dtype == np.float32 and today.shape == (40, text_backbone.out_dim)
    assert today.tobytes() == explicit.tobytes() == pooled.tobytes()


def test_decoded_chunks_order_overlap_and_errors():
    chunks = [list(range(i, i + 5)) for i in range(0, 50, 5)]
    seen = set()

    def decode(item):
        seen.add(threading.current_thread().name)
        return item * 2

    assert list(decoded_chunks(chunks, decode, 3)) == [[2 * x for x in c] for c in chunks]
    assert all(name.startswith("decode") for name in seen)  # the pool decoded, not the caller
    assert list(decoded_chunks(chunks, decode, 0)) == list(decoded_chunks(chunks, decode, 2))

    def bad(item):
        if item == 12:
            raise ValueError("item 12: text: broken")
        return item

    produced = decoded_chunks(chunks, bad, 2)
    assert next(produced) == chunks[0] and next(produced) == chunks[1]
    with pytest.raises(ValueError, match="item 12"):
        next(produced)
    assert default_workers("cuda") >= 1 and default_workers("cpu") >= 0


def test_live_features_are_float32_on_the_backbones_device(texts, text_backbone):
    inputs = decoded_inputs(texts[:6], ["text"])
    inputs["text"][2] = None  # an item without text: a zero row
    live = LiveFeatures(torch.nn.ModuleDict({"text": text_backbone}), inputs, {"text": text_backbone.out_dim})
    with torch.no_grad():
        out = live(torch.tensor([0, 2, 5]))["text"]
    assert out.dtype == torch.float32 and out.shape == (3, text_backbone.out_dim)
    assert not out[1].any() and out[0].any()


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU")
def test_cuda_features_match_cpu(texts, text_backbone):
    cpu = extract_features(texts, "text", text_backbone, None, batch_size=8, progress=False)
    gpu = extract_features(
        texts, "text", text_backbone, None, batch_size=8, progress=False, device=resolve_device("cuda")
    )
    assert np.abs(cpu - gpu).max() <= 1e-3
    assert next(text_backbone.parameters()).device.type == "cpu"  # moved back after the pass


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU")
def test_finetune_step_under_bf16_autocast(texts):
    device = resolve_device("cuda")
    backbone = build_backbone("text", 1).to(device)
    head = torch.nn.Linear(backbone.out_dim, 2).to(device)
    live = LiveFeatures(torch.nn.ModuleDict({"text": backbone}), decoded_inputs(texts[:8], ["text"]),
                        {"text": backbone.out_dim})  # fmt: skip
    optimiser = torch.optim.AdamW([p for p in backbone.parameters() if p.requires_grad] + list(head.parameters()))
    with autocast(device, "bf16"):
        features = live(torch.arange(8))["text"]
        loss = torch.nn.functional.cross_entropy(head(features).float(), torch.arange(8, device=device) % 2)
    assert features.dtype == torch.float32 and features.device.type == "cuda"
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss)
