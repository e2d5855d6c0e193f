"""onnxruntime sessions: one per bundle component, on the provider the settings ask for.

`auto` takes CUDA when onnxruntime-gpu sees a GPU; when CUDA is asked but cannot be used the session
falls back to CPU and `provider` says so (docs/bad-input.md row 18) — it never fails the load.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.settings import Settings
from service.threads import lower_priority

log = logging.getLogger(__name__)
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
NUMPY_DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "int64": np.int64,
    "int32": np.int32,
    "bool": np.bool_,
    "uint8": np.uint8,
}


def requested_providers(setting: str) -> list[str]:
    """Providers to hand to onnxruntime, best first."""
    available = ort.get_available_providers()
    if setting == "cpu":
        return [CPU]
    if setting == "cuda" and CUDA not in available:
        log.warning("CUDA requested but onnxruntime offers only %s; serving on CPU", available)
    if setting in ("cuda", "auto") and CUDA in available:
        return [CUDA, CPU]
    return [CPU]


def provider_options(providers: list[str], settings: Settings) -> list[dict[str, str]]:
    """One options dict per provider: the CUDA EP's from the FUSIONSERVE_CUDA_* settings, none for the CPU."""
    cuda = {
        "device_id": str(settings.cuda_device_id),
        "cudnn_conv_algo_search": settings.cuda_cudnn_conv_algo_search,
        "arena_extend_strategy": settings.cuda_arena_extend_strategy,
        "do_copy_in_default_stream": "1",  # copies ordered with compute: no cross-stream synchronisation
    }
    if settings.cuda_mem_limit_mb:
        cuda["gpu_mem_limit"] = str(settings.cuda_mem_limit_mb * 1024 * 1024)
    return [cuda if provider == CUDA else {} for provider in providers]


def _in_thread(make, nice: int):
    """Call `make()` in a short-lived thread at the compute priority: ORT's intra-op pool, created with the
    session, inherits it."""
    out: dict = {}

    def run() -> None:
        lower_priority(nice)
        try:
            out["value"] = make()
        except BaseException as error:  # re-raised in the caller
            out["error"] = error

    thread = threading.Thread(target=run, name="ort-session")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def session_options(settings: Settings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are noise
    # Memory patterns are planned and cached per input shape; with dynamic batch sizes and lengths that
    # cache only grows, so it is off (measured: docs/design-choices.md, "Alternatives measured and rejected").
    options.enable_mem_pattern = False
    # Each component has its own session and thread pool; spinning pools would burn the cores that the
    # event loop, preprocessing and the other components need between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class OrtModel:
    """One ONNX component. `run` is thread-safe (ORT releases the GIL), so it runs in worker threads."""

    def __init__(self, path: Path, settings: Settings):
        self.path = Path(path)
        providers = requested_providers(settings.providers)

        def create(chosen: list[str]) -> ort.InferenceSession:
            options = provider_options(chosen, settings)
            make = lambda: ort.InferenceSession(  # noqa: E731
                str(path), session_options(settings), providers=chosen, provider_options=options
            )
            return _in_thread(make, settings.compute_nice)

        try:
            self.session = create(providers)
        except Exception as error:  # CUDA libraries missing at session creation: fall back, say why
            if providers == [CPU]:
                raise
            log.warning("could not create %s on %s (%s); falling back to CPU", path.name, providers[0], error)
            self.session = create([CPU])
        self.provider = self.session.get_providers()[0]
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.io_binding = settings.io_binding == "on" or (settings.io_binding == "auto" and self.provider == CUDA)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if not self.io_binding:
            return self.session.run(self.output_names, feeds)
        binding = self.session.io_binding()  # one per call: runs in several worker threads at once
        for name, array in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name in self.output_names:
            binding.bind_output(name, "cpu")  # allocated by onnxruntime, copied from the device once
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()
