"""The GPU path, checked where it can be on a CPU: the CUDA EP's options come from the settings,
and a run through an IO binding gives exactly the plain run's outputs for every component of a real bundle."""

from __future__ import annotations

import numpy as np
import pytest

from service.engine.bundle import load_bundle
from service.engine.pipeline import run_direct
from service.engine.runtime import CPU, CUDA, provider_options
from service.items import RawItem
from service.preprocess.prepare import prepare_item
from service.settings import Settings, SettingsError, load_settings
from tests.bundles import sample_inputs
from tests.integration.conftest import fast_settings


def test_cuda_options_come_from_the_settings_and_the_cpu_gets_none():
    settings = Settings(cuda_cudnn_conv_algo_search="HEURISTIC", cuda_arena_extend_strategy="kSameAsRequested",
                        cuda_mem_limit_mb=2048, cuda_device_id=1)  # fmt: skip
    cuda, cpu = provider_options([CUDA, CPU], settings)
    assert cuda == {"device_id": "1", "cudnn_conv_algo_search": "HEURISTIC",
                    "arena_extend_strategy": "kSameAsRequested", "do_copy_in_default_stream": "1",
                    "gpu_mem_limit": str(2048 * 1024 * 1024)}  # fmt: skip
    assert cpu == {}
    defaults = provider_options([CUDA], Settings())[0]  # onnxruntime's own defaults, no memory cap
    assert defaults["cudnn_conv_algo_search"] == "EXHAUSTIVE" and "gpu_mem_limit" not in defaults


@pytest.mark.parametrize(("variable", "value"), [("FUSIONSERVE_CUDA_CUDNN_CONV_ALGO_SEARCH", "FASTEST"),
                                                 ("FUSIONSERVE_IO_BINDING", "yes")])  # fmt: skip
def test_a_bad_gpu_setting_names_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def answers(tiny_models, io_binding: str):
    settings = fast_settings(tiny_models, io_binding=io_binding)
    bundle = load_bundle(tiny_models / "tiny" / "1", settings)
    assert all(c.model.io_binding == (io_binding == "on") for c in [*bundle.encoders.values(), bundle.fusion])
    items = [prepare_item(RawItem(**sample_inputs(seed)), bundle.manifest, bundle.tokenizer, settings)
             for seed in (1, 2, 3)]  # fmt: skip
    return run_direct(bundle.encoders, bundle.fusion, items)


def test_io_binding_gives_the_plain_runs_outputs(tiny_models):
    for bound, plain in zip(answers(tiny_models, "on"), answers(tiny_models, "auto"), strict=True):  # auto: CPU → off
        np.testing.assert_array_equal(bound.probabilities, plain.probabilities)
        np.testing.assert_array_equal(bound.fused, plain.fused)
        for modality, embedding in plain.embeddings.items():
            np.testing.assert_array_equal(bound.embeddings[modality], embedding)
