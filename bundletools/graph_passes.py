"""The graph passes behind `fusionserve optimize`: each writes an optimised copy of one encoder graph.

Every pass of PASSES stays fp32; FP16 (`--fp16`, opt-in) converts weights and activations to float16 with
float32 inputs and outputs. Every pass must emit only operators that both the CPU and the CUDA execution
providers run, so an optimised bundle serves on either; `foreign_ops` checks that on the written graph rather
than trusting the pass. `onnx` and `onnxruntime.transformers` (which imports sympy) are imported inside
the passes: the serving image has neither, and `fusionserve serve` imports this package.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import onnxruntime as ort

STANDARD_DOMAINS = frozenset({"", "ai.onnx"})
# com.microsoft contrib ops with float kernels in both the CPU and the CUDA EP (onnxruntime's
# OperatorKernels.md). Left out on purpose: FusedConv (CUDA's kernel fuses Relu only, EfficientNet's
# ReLU6 fuses as Clip), FusedGemm and NCHWc ops (CPU only), BiasSoftmax and BiasAdd (CUDA only).
PORTABLE_CONTRIB = frozenset(
    {
        "Attention",
        "MultiHeadAttention",
        "EmbedLayerNormalization",
        "SkipLayerNormalization",
        "SkipSimplifiedLayerNormalization",
        "BiasGelu",
        "FastGelu",
        "Gelu",
        "QuickGelu",
        "FusedMatMul",
    }
)
ORT_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
}


# What optimize_model(opt_level=2) switches off in its ORT pre-pass: these rewrites hide the patterns
# that its attention fusion looks for.
PRE_PASS_DISABLED = (
    "MatMulScaleFusion",
    "MatMulAddFusion",
    "MatmulTransposeFusion",
    "GemmActivationFusion",
    "BiasSoftmaxFusion",
)


class PassUnavailable(RuntimeError):
    """The pass needs a package this install lacks (the `optimize` extra)."""


@contextmanager
def _quiet():
    """onnxruntime.transformers logs each fusion attempt at WARNING through the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def ort_offline(source: Path, target: Path, level: str, disabled: tuple[str, ...] = ()) -> dict[str, int]:
    """onnxruntime's own graph optimiser, run once offline on the CPU EP and saved (no fusion counts)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ORT_LEVELS[level]
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled))
    return {}


def _constants(graph) -> dict:
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def attention_dims(path: Path) -> tuple[int, int]:
    """(num_heads, hidden_size) read off the graph, (0, 0) when it has no recognisable attention.

    onnxruntime.transformers' own detection fails on the TorchScript exports (BERT reshapes heads to
    [b, s, -1, head_dim]). Here hidden = the commonest LayerNormalization width and head_dim = the commonest
    last entry of a 4-D Reshape target; a wrong guess changes outputs and is caught by the parity check.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    values, producers = _constants(graph), {out: node for node in graph.node for out in node.output}
    widths = Counter(
        int(values[n.input[1]].size) for n in graph.node if n.op_type == "LayerNormalization" and n.input[1] in values
    )
    hidden = widths.most_common(1)[0][0] if widths else 0
    head_dims: Counter = Counter()
    for node in (n for n in graph.node if n.op_type == "Reshape"):
        shape = producers.get(node.input[1])
        last = shape.input[-1] if shape is not None and shape.op_type == "Concat" and len(shape.input) == 4 else None
        if last in values and values[last].size == 1 and 0 < int(values[last].item()) < hidden:
            head_dims[int(values[last].item())] += 1
    head_dim = next((d for d, _ in head_dims.most_common() if hidden % d == 0), 0)
    return (hidden // head_dim, hidden) if head_dim else (0, 0)


def transformer_fusions(
    source: Path, target: Path, model_type: str, pre: str = "basic", attention: bool = True
) -> dict[str, int]:
    """onnxruntime.transformers' fusions (attention, LayerNorm, GELU…) after an ORT pre-pass.

    pre="basic" is optimize_model's opt_level 1 (its BERT default), pre="extended" its opt_level 2, done
    by hand: its own opt_level >= 1 path imports torch, which the server must never do. The counts
    returned are the fused operators, plus the attention shape that was passed to the fusions.
    """
    try:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError as error:
        raise PassUnavailable(f"{error}; install the 'optimize' extra (onnx, sympy)") from None
    num_heads, hidden = attention_dims(source)
    options = FusionOptions(model_type)
    options.enable_attention = attention
    with tempfile.TemporaryDirectory() as work, _quiet():
        prepared = Path(work) / "prepared.onnx"
        ort_offline(source, prepared, pre, PRE_PASS_DISABLED if pre == "extended" else ())
        model = optimize_model(str(prepared), model_type, num_heads, hidden, options, opt_level=0)
        model.save_model_to_file(str(target))
    fused = {op: count for op, count in model.get_fused_operator_statistics().items() if count}
    return fused | ({"num_heads": num_heads, "hidden_size": hidden} if num_heads else {})


def to_fp16(source: Path, target: Path) -> dict[str, int]:
    """float16 weights and activations, float32 at the edges (a Cast after each input and before each output),
    so the manifest's tensor types and the server's feeds stay as they are. For the GPU, whose tensor cores
    run fp16 math; on the CPU EP it is usually slower."""
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as error:
        raise PassUnavailable(f"fp16 needs the 'optimize' extra ({error.name})") from None
    with _quiet():
        model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return {"Cast": sum(node.op_type == "Cast" for node in model.graph.node)}


GraphPass = Callable[[Path, Path], dict[str, int]]
FP16: tuple[str, GraphPass] = ("fp16", to_fp16)
# Tried in order for each modality; the fastest candidate that keeps parity wins.
PASSES: dict[str, list[tuple[str, GraphPass]]] = {
    "text": [
        ("transformers:bert", partial(transformer_fusions, model_type="bert")),
        ("transformers:bert-no-attention", partial(transformer_fusions, model_type="bert", attention=False)),
        ("ort:extended+transformers:bert", partial(transformer_fusions, model_type="bert", pre="extended")),
    ],
    "audio": [
        ("transformers:bert", partial(transformer_fusions, model_type="bert")),
        ("ort:extended", partial(ort_offline, level="extended")),
    ],
    "image": [
        ("ort:basic", partial(ort_offline, level="basic")),
        ("ort:extended", partial(ort_offline, level="extended")),
    ],
}


def op_counts(path: Path) -> Counter:
    import onnx

    return Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)


def foreign_ops(path: Path) -> list[str]:
    """Operators of the graph that the CPU or the CUDA EP lacks (sorted 'domain:op' strings)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    found = {(node.domain, node.op_type) for node in graph.node}
    return sorted(
        f"{domain}:{op}"
        for domain, op in found
        if domain not in STANDARD_DOMAINS and not (domain == "com.microsoft" and op in PORTABLE_CONTRIB)
    )


def time_interleaved(calls: dict[str, Callable[[], object]], rounds: int = 5, min_s: float = 0.2) -> dict:
    """Seconds per call for each entry, one value per round. Every entry runs once per round, in
    alternating order (a noisy neighbour or a turbo step hits all of them alike, and none is always
    first), repeating its call for at least min_s."""
    for call in calls.values():
        call()  # warm-up: first runs allocate and pre-pack
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            count, started = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - started) < min_s or count == 0:
                calls[name]()
                count += 1
            seconds[name].append(elapsed / count)
    return seconds


def paired_speedup(plain: list[float], other: list[float]) -> float:
    """Median over rounds of plain/other, each ratio taken within one round (seconds apart)."""
    return statistics.median(p / o for p, o in zip(plain, other, strict=True))


def best_speedup(plain: list[float], other: list[float]) -> float:
    """Fastest round of plain / fastest round of other: on a shared machine the fastest round is the one
    least disturbed by neighbours, so this ratio is the steadiest under load (bench/graphs.py's A/A rows)."""
    return min(plain) / min(other)


def median(values: list[float]) -> float:
    return statistics.median(values)
