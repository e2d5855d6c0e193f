"""ONNX graph builders for the test bundles (tests/bundles.py).

Tiny but real graphs with the tensor names and named dynamic axes of docs/bundle-format.md. Each builder returns the
model and the TensorSpecs of its inputs and outputs, so the manifest and the graph are made from one
source and cannot disagree. Weights are plain numpy arrays stored as initialisers under the names in
`*_WEIGHTS`; tests/bundles.py reads them back for its independent numpy reference.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import ModelProto, NodeProto, TensorProto, helper, numpy_helper

from service.manifest import TensorSpec

OPSET = 17
IR_VERSION = 8  # the IR that shipped with opset 17; every onnxruntime since 1.14 loads it
EPS = 1e-12  # L2-normalise divides by max(||x||, EPS): an all-zero vector stays zero instead of NaN
HIDDEN = 16  # width of the image encoder's hidden layer

IMAGE_WEIGHTS = ("image_w1", "image_b1", "image_w2")
TEXT_WEIGHTS = ("text_table", "text_w")
AUDIO_WEIGHTS = ("audio_w1", "audio_w2")
VIDEO_WEIGHTS = ("pool_attention", "pool_w")  # [D,1] frame scores, [D,D] projection
MASKED_SCORE = 1e9  # subtracted from a padded frame's score: its softmax weight is exactly 0 in float32
FUSION_WEIGHTS = ("fusion_w", "fusion_b")
HEAD_WEIGHTS = ("head_w_{modality}", "head_b_{modality}")  # [D,C], [C] per modality (fusion with heads)

_ONNX_DTYPES = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64, "uint8": TensorProto.UINT8}


def _spec(name: str, dtype: str, *shape: int | str) -> TensorSpec:
    return TensorSpec(name=name, dtype=dtype, shape=list(shape))


def _value_info(spec: TensorSpec) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(spec.name, _ONNX_DTYPES[spec.dtype], spec.shape)


def _constants(weights: dict[str, np.ndarray], used: set[str]) -> list[TensorProto]:
    """Weights (floats as float32) plus the shared constants, keeping only what a node reads:
    onnxruntime warns about every unused initialiser."""
    tensors = {
        "eps": np.array(EPS, np.float32),
        "one": np.array(1.0, np.float32),
        "axis1": np.array([1], np.int64),
        "axis2": np.array([2], np.int64),
        "masked_score": np.array(MASKED_SCORE, np.float32),
    }
    for key, value in weights.items():
        value = np.asarray(value)
        tensors[key] = value.astype(np.float32) if value.dtype.kind == "f" else value
    return [numpy_helper.from_array(v, k) for k, v in tensors.items() if k in used]


def _l2_normalise(x: str, out: str) -> list[NodeProto]:
    return [
        helper.make_node("ReduceL2", [x], [f"{out}_norm"], axes=[1], keepdims=1),
        helper.make_node("Max", [f"{out}_norm", "eps"], [f"{out}_safe_norm"]),
        helper.make_node("Div", [x, f"{out}_safe_norm"], [out]),
    ]


def _masked_mean(x: str, mask: str, axis: int, out: str) -> list[NodeProto]:
    """Mean of x over `axis` counting only positions where mask (float, [B, T]) is 1.

    Multiplying by the mask (rather than trusting padding to be zero) is what makes the encoders
    batch-invariant: whatever finite values the padded cells hold, they contribute exactly 0.
    The count is clamped to 1 so an all-padding row yields 0, not NaN.
    """
    mask_axis = 2 if axis == 1 else 1  # [B,T] → [B,T,1] for text tokens, [B,1,T] for audio frames
    return [
        helper.make_node("Unsqueeze", [mask, f"axis{mask_axis}"], [f"{out}_mask"]),
        helper.make_node("Mul", [x, f"{out}_mask"], [f"{out}_masked"]),
        helper.make_node("ReduceSum", [f"{out}_masked", f"axis{axis}"], [f"{out}_sum"], keepdims=0),
        helper.make_node("ReduceSum", [mask, "axis1"], [f"{out}_count"], keepdims=1),
        helper.make_node("Max", [f"{out}_count", "one"], [f"{out}_safe_count"]),
        helper.make_node("Div", [f"{out}_sum", f"{out}_safe_count"], [out]),
    ]


def _model(name: str, nodes, inputs, outputs, weights) -> ModelProto:
    used = {name for node in nodes for name in node.input}
    graph = helper.make_graph(
        nodes,
        name,
        [_value_info(s) for s in inputs],
        [_value_info(s) for s in outputs],
        initializer=_constants(weights, used),
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="fusionserve-tests",
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def image_encoder(weights: dict[str, np.ndarray], size: int, dim: int, normalise: tuple | None = None):
    """pixel_values [B,3,S,S] → mean over H,W → tanh(·W1 + b1) → ·W2 → L2 → embedding [B,D]. With
    normalise=(mean, std), pixel_values are uint8 and the graph first computes (float(pixels) - mean) / std."""
    dtype, source, nodes = ("uint8", "normalised", []) if normalise else ("float32", "pixel_values", [])
    if normalise:
        weights = {**weights, "pixel_mean": np.reshape(normalise[0], (1, 3, 1, 1)),
                   "pixel_std": np.reshape(normalise[1], (1, 3, 1, 1))}  # fmt: skip
        nodes = [
            helper.make_node("Cast", ["pixel_values"], ["pixels_f"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["pixels_f", "pixel_mean"], ["centred"]),
            helper.make_node("Div", ["centred", "pixel_std"], ["normalised"]),
        ]
    inputs = [_spec("pixel_values", dtype, "batch", 3, size, size)]
    outputs = [_spec("embedding", "float32", "batch", dim)]
    nodes += [
        helper.make_node("ReduceMean", [source], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["pooled", "image_w1"], ["hidden_linear"]),
        helper.make_node("Add", ["hidden_linear", "image_b1"], ["hidden_biased"]),
        helper.make_node("Tanh", ["hidden_biased"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "image_w2"], ["projected"]),
        *_l2_normalise("projected", "embedding"),
    ]
    return _model("image_encoder", nodes, inputs, outputs, weights), inputs, outputs


def text_encoder(weights: dict[str, np.ndarray], dim: int):
    """input_ids, attention_mask [B,L] → table lookup → masked mean → ·W → L2 → embedding [B,D]."""
    inputs = [
        _spec("input_ids", "int64", "batch", "sequence"),
        _spec("attention_mask", "int64", "batch", "sequence"),
    ]
    outputs = [_spec("embedding", "float32", "batch", dim)]
    nodes = [
        helper.make_node("Gather", ["text_table", "input_ids"], ["tokens"], axis=0),  # [B,L,D]
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        *_masked_mean("tokens", "mask_f", 1, "pooled"),
        helper.make_node("MatMul", ["pooled", "text_w"], ["projected"]),
        *_l2_normalise("projected", "embedding"),
    ]
    return _model("text_encoder", nodes, inputs, outputs, weights), inputs, outputs


def audio_encoder(weights: dict[str, np.ndarray], n_mels: int, dim: int):
    """input_features [B,M,T] + frame_mask [B,T] → masked mean over frames → tanh(·W1) → ·W2 → L2."""
    inputs = [
        _spec("input_features", "float32", "batch", n_mels, "frames"),
        _spec("frame_mask", "float32", "batch", "frames"),
    ]
    outputs = [_spec("embedding", "float32", "batch", dim)]
    nodes = [
        *_masked_mean("input_features", "frame_mask", 2, "pooled"),  # [B, n_mels]
        helper.make_node("MatMul", ["pooled", "audio_w1"], ["hidden_linear"]),
        helper.make_node("Tanh", ["hidden_linear"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "audio_w2"], ["projected"]),
        *_l2_normalise("projected", "embedding"),
    ]
    return _model("audio_encoder", nodes, inputs, outputs, weights), inputs, outputs


def video_pool(weights: dict[str, np.ndarray], dim: int):
    """frame_embeddings [B,K,D] + frame_mask [B,K] → attention pooling → ·W → L2 → embedding [B,D]: frame k's
    weight is softmax_k(e_k · a) over the real frames (a padded frame's score is pushed to -1e9, so its weight
    is exactly 0 and the answer does not depend on how far a batch pads K)."""
    inputs = [
        _spec("frame_embeddings", "float32", "batch", "frames", dim),
        _spec("frame_mask", "float32", "batch", "frames"),
    ]
    outputs = [_spec("embedding", "float32", "batch", dim)]
    nodes = [
        helper.make_node("MatMul", ["frame_embeddings", "pool_attention"], ["scores_column"]),  # [B,K,1]
        helper.make_node("Squeeze", ["scores_column", "axis2"], ["scores"]),  # [B,K]
        helper.make_node("Sub", ["one", "frame_mask"], ["padded"]),  # 1 where padding
        helper.make_node("Mul", ["padded", "masked_score"], ["penalty"]),
        helper.make_node("Sub", ["scores", "penalty"], ["masked_scores"]),
        helper.make_node("Softmax", ["masked_scores"], ["weights"], axis=1),  # [B,K]
        helper.make_node("Unsqueeze", ["weights", "axis2"], ["weights_column"]),  # [B,K,1]
        helper.make_node("Mul", ["frame_embeddings", "weights_column"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "axis1"], ["pooled"], keepdims=0),  # [B,D]
        helper.make_node("MatMul", ["pooled", "pool_w"], ["projected"]),
        *_l2_normalise("projected", "embedding"),
    ]
    return _model("video_pool", nodes, inputs, outputs, weights), inputs, outputs


def fusion(weights: dict[str, np.ndarray], modalities: list[str], dim: int, classes: int, heads: bool = False):
    """<m>_embedding [B,D] per modality + present [B,M] → logits [B,C] and fused [B,D]; with `heads` also
    modality_logits [B,M,C]: each modality's own linear head on its embedding.

    Every embedding is multiplied by its present column first, so an absent modality contributes
    nothing to logits and fused whatever the caller put in its slot. The heads read the raw slot: the
    row of an absent modality is meaningless (garbage in, garbage out), and the server must drop it.
    """
    inputs = [_spec(f"{m}_embedding", "float32", "batch", dim) for m in modalities]
    inputs.append(_spec("present", "float32", "batch", len(modalities)))
    outputs = [_spec("logits", "float32", "batch", classes), _spec("fused", "float32", "batch", dim)]
    slices = {f"slice{i}": np.array([i], np.int64) for i in range(len(modalities) + 1)}
    nodes, masked = [], []
    for i, modality in enumerate(modalities):
        column, out = f"present_{modality}", f"masked_{modality}"
        nodes.append(helper.make_node("Slice", ["present", f"slice{i}", f"slice{i + 1}", "axis1"], [column]))
        nodes.append(helper.make_node("Mul", [f"{modality}_embedding", column], [out]))
        masked.append(out)
    nodes += [
        helper.make_node("Concat", masked, ["concatenated"], axis=1),  # [B, M*D]
        helper.make_node("MatMul", ["concatenated", "fusion_w"], ["logits_linear"]),
        helper.make_node("Add", ["logits_linear", "fusion_b"], ["logits"]),
        helper.make_node("Sum", masked, ["summed"]),
        *_l2_normalise("summed", "fused"),
    ]
    if heads:
        outputs.append(_spec("modality_logits", "float32", "batch", len(modalities), classes))
        nodes += _modality_heads(modalities)
    model = _model("fusion", nodes, inputs, outputs, {**weights, **slices})
    return model, inputs, outputs


def _modality_heads(modalities: list[str]) -> list[NodeProto]:
    """<m>_embedding [B,D] · head_w_<m> [D,C] + head_b_<m> → [B,1,C] each, stacked → modality_logits [B,M,C]."""
    nodes, rows = [], []
    for modality in modalities:
        weight, bias = (name.format(modality=modality) for name in HEAD_WEIGHTS)
        nodes += [
            helper.make_node("MatMul", [f"{modality}_embedding", weight], [f"head_{modality}_linear"]),
            helper.make_node("Add", [f"head_{modality}_linear", bias], [f"head_{modality}"]),
            helper.make_node("Unsqueeze", [f"head_{modality}", "axis1"], [f"head_{modality}_row"]),
        ]
        rows.append(f"head_{modality}_row")
    return [*nodes, helper.make_node("Concat", rows, ["modality_logits"], axis=1)]
