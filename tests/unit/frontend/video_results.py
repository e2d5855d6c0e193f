"""Hand-made video answers for the protocol codecs' unit tests: a text + image + video manifest (fusion's slots
image, text, video_frames) and ItemResults with and without SegmentResults, as the engine would answer them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.frontend.cycle import Inference
from service.items import ItemResult, PreparedItem, SegmentResults
from service.manifest import Manifest

LABELS = ["cat", "dog", "owl"]
DIM = 4


def _tensor(name: str, *shape) -> dict:
    return {"name": name, "dtype": "float32", "shape": ["batch", *shape]}


IDS = [{"name": name, "dtype": "int64", "shape": ["batch", "seq"]} for name in ("input_ids", "attention_mask")]


def video_manifest() -> Manifest:
    encoders = {
        "image": {"file": "image.onnx", "inputs": [_tensor("pixels", 3, 8, 8)], "outputs": [_tensor("embedding", DIM)],
                  "preprocess": {"size": 8}},
        "text": {"file": "text.onnx", "inputs": IDS, "outputs": [_tensor("embedding", DIM)]},
        "video": {"file": "video_pool.onnx", "inputs": [_tensor("frame_embeddings", "frames", DIM),
                                                         _tensor("frame_mask", "frames")],
                  "outputs": [_tensor("embedding", DIM)], "preprocess": {"segment_s": 2.0}},
    }  # fmt: skip
    slots = ["image", "text", "video_frames"]
    fusion = {"file": "fusion.onnx", "modalities": slots,
              "inputs": [*(_tensor(f"{s}_embedding", DIM) for s in slots), _tensor("present", 3)],
              "outputs": [_tensor("logits", 3), _tensor("fused", DIM), _tensor("modality_logits", 3, 3)]}  # fmt: skip
    files = {name: "0" * 64 for name in ("image.onnx", "text.onnx", "video_pool.onnx", "fusion.onnx", "tokenizer.json")}
    golden = [{"inputs": {"text": "hi"}, "outputs": {"probabilities": [0.2, 0.3, 0.5], "fused": [0, 0, 0, 1]}}]
    return Manifest.model_validate({"name": "clips", "version": "1", "created": "2026-12-07T00:00:00+00:00",
                                    "labels": LABELS, "embedding_dim": DIM, "encoders": encoders, "fusion": fusion,
                                    "files": files, "golden": golden})  # fmt: skip


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, np.float32)
    return vector / np.linalg.norm(vector)


def text_result() -> ItemResult:
    return ItemResult(["text"], np.array([0.7, 0.2, 0.1], np.float32), unit(1, 0, 0, 0), {"text": unit(1, 0, 0, 0)},
                      {"text": np.array([0.6, 0.3, 0.1], np.float32)})  # fmt: skip


def video_result() -> ItemResult:
    """text + a 3-segment video: segment 1 has no frames (video_frames absent there), its top label is owl."""
    segments = SegmentResults(
        bounds=np.array([[0, 2], [2, 4], [4, 5.5]], np.float32),
        probabilities=np.array([[0.1, 0.8, 0.1], [0.2, 0.1, 0.7], [0.5, 0.3, 0.2]], np.float32),
        fused=np.stack([unit(0, 1, 0, 0), unit(0, 0, 1, 0), unit(1, 1, 0, 0)]),
        present=np.array([[True, False], [False, False], [True, False]]),
        embeddings={"video_frames": np.stack([unit(0, 1, 1, 0), np.zeros(DIM, np.float32), unit(1, 0, 0, 1)])},
        modality_probabilities={"video_frames": np.array([[0.1, 0.9, 0], [0, 0, 0], [0.1, 0.1, 0.8]], np.float32)},
    )
    clip = {"text": unit(1, 0, 0, 0), "video_frames": unit(1, 1, 1, 1)}
    probabilities = {"text": np.array([0.6, 0.3, 0.1], np.float32), "video_frames": np.array([0.2, 0.7, 0.1])}
    return ItemResult(["text", "video"], np.array([0.3, 0.6, 0.1], np.float32), unit(0, 1, 0, 1), clip,
                      probabilities, segments=segments)  # fmt: skip


def inference(*results: ItemResult) -> Inference:
    tokens = (np.arange(3, dtype=np.int64), np.ones(3, np.int64))  # a text's (ids, mask): 3 tokens
    items = [PreparedItem({m: tokens if m == "text" else np.zeros(1) for m in r.modalities}) for r in results]
    return Inference(items, list(results))


@dataclass
class FakeBundle:
    manifest: Manifest


@dataclass
class FakeState:
    """The two fields a response body reads of a VersionState."""

    bundle: FakeBundle
    version: str = "1"


def state() -> FakeState:
    return FakeState(FakeBundle(video_manifest()))
