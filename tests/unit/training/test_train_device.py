"""The heads train where cfg.device says: on CPU exactly as before (auto = cpu without a GPU, bit for bit), a GPU
asked for but absent is a user error before any work; on a GPU (skipped without one) fp32, bf16 and fp16 runs
learn as the CPU run does and the returned model is on the CPU, ready for calibration and export."""

from __future__ import annotations

import pytest
import torch

from training.errors import UserError
from training.train import predict, train

from .test_train_export import config, data  # noqa: F401 (the tiny synthetic data fixture)

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch")


def _accuracy(result, split) -> float:
    return float((predict(result.model, split)[0].argmax(1) == split.labels).float().mean())


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto picks the GPU here")
def test_auto_is_the_cpu_without_a_gpu_and_changes_nothing(data):  # noqa: F811
    auto, cpu = train(config(device="auto"), data), train(config(device="cpu", precision="fp16"), data)
    assert auto.history == cpu.history  # precision has no effect on the CPU: fp32 there, as before
    a, b = auto.model.state_dict(), cpu.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_a_gpu_asked_for_but_absent_is_a_user_error(data):  # noqa: F811
    with pytest.raises(UserError, match="no CUDA GPU is visible"):
        train(config(device="cuda"), data)


@GPU
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_heads_train_on_the_gpu(data, precision):  # noqa: F811
    cpu = train(config(device="cpu", epochs=15), data)
    gpu = train(config(device="cuda", precision=precision, epochs=15), data)
    assert next(gpu.model.parameters()).device.type == "cpu"
    test = data.splits["test"]
    assert _accuracy(gpu, test) > 0.6 and abs(_accuracy(gpu, test) - _accuracy(cpu, test)) <= 0.1
