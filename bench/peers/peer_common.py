"""What every peer server shares: the bundle's ONNX encoders + fusion head, its tokenizer and its preprocessing.

Runs inside the peer venvs (numpy, onnxruntime, tokenizers, Pillow only; no fusionserve import), so it is
what a user would write against the bundle: the manifest's image recipe (RGB, bilinear shorter-side resize,
centre crop, (x - mean) / std, CHW) and tokenizer (truncation at max_length, pad to the batch's longest).
Every peer runs the same computation as fusionserve's classify: encoder → fusion.onnx → softmax → top 5.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image
from tokenizers import Tokenizer

TOP_K = 5


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bundle", type=Path, required=True, help="models/<name>/<version>")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads per session")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-ms", type=float, default=5.0)
    return parser.parse_args()


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if os.environ.get("PEER_ORT_SPINNING") == "0":  # opt-in only: ORT's default (spinning on) is the idiom
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class Model:
    def __init__(self, bundle: Path, threads: int):
        self.manifest = json.loads((bundle / "manifest.json").read_text())
        encoders = self.manifest["encoders"]
        self.labels = self.manifest["labels"]
        self.sessions = {m: session(bundle / encoders[m]["file"], threads) for m in ("image", "text")}
        self.fusion = session(bundle / self.manifest["fusion"]["file"], threads)
        self.image_spec, text_spec = encoders["image"]["preprocess"], encoders["text"]["preprocess"]
        self.tokenizer = Tokenizer.from_file(str(bundle / text_spec["tokenizer_file"]))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=text_spec["max_length"])

    # ---- preprocessing (one item) ----------------------------------------------------------------

    def prepare(self, item: dict) -> tuple[str, object]:
        """{"text": str} or {"image": base64} → (modality, arrays)."""
        if item.get("image") is not None:
            return "image", self.image(base64.b64decode(item["image"]))
        encoding = self.tokenizer.encode(item["text"], add_special_tokens=True)
        return "text", (np.asarray(encoding.ids, np.int64), np.asarray(encoding.attention_mask, np.int64))

    def image(self, data: bytes) -> np.ndarray:
        spec, size = self.image_spec, self.image_spec["size"]
        image = Image.open(io.BytesIO(data)).convert("RGB")
        width, height = image.size
        scale = size / min(width, height)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        pixels = np.asarray(image.crop((left, top, left + size, top + size)))
        if spec.get("normalise") == "graph":  # the encoder takes the uint8 pixels and normalises them itself
            return np.ascontiguousarray(pixels.transpose(2, 0, 1))
        pixels = pixels.astype(np.float32)
        mean, std = np.asarray(spec["mean"], np.float32), np.asarray(spec["std"], np.float32)
        return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))

    # ---- model (one batch of one modality) --------------------------------------------------------

    def feeds(self, modality: str, arrays: list) -> dict[str, np.ndarray]:
        if modality == "image":
            return {"pixel_values": np.stack(arrays)}
        longest = max(ids.shape[0] for ids, _ in arrays)
        ids, mask = (np.zeros((len(arrays), longest), np.int64) for _ in range(2))
        for row, (item_ids, item_mask) in enumerate(arrays):
            ids[row, : item_ids.shape[0]], mask[row, : item_mask.shape[0]] = item_ids, item_mask
        return {"input_ids": ids, "attention_mask": mask}

    def predict(self, modality: str, arrays: list) -> np.ndarray:
        """Items of one modality → class probabilities [B, C]."""
        embedding = self.sessions[modality].run(None, self.feeds(modality, arrays))[0].astype(np.float32)
        modalities = self.manifest["fusion"]["modalities"]
        names = [spec["name"] for spec in self.manifest["fusion"]["inputs"]]  # M embeddings, then `present`
        batch, dim = embedding.shape
        feeds = {name: np.zeros((batch, dim), np.float32) for name in names[: len(modalities)]}
        feeds[names[modalities.index(modality)]] = embedding  # absent modalities: zeros, present = 0
        present = np.zeros((batch, len(modalities)), np.float32)
        present[:, modalities.index(modality)] = 1.0
        feeds[names[len(modalities)]] = present
        logits = self.fusion.run(["logits"], feeds)[0]
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)

    def predict_mixed(self, prepared: list[tuple[str, object]]) -> list[np.ndarray]:
        """A batch that may mix modalities: one call per modality, results back in request order."""
        out: list = [None] * len(prepared)
        for modality in {m for m, _ in prepared}:
            rows = [i for i, (m, _) in enumerate(prepared) if m == modality]
            for row, probabilities in zip(rows, self.predict(modality, [prepared[i][1] for i in rows]), strict=True):
                out[row] = probabilities
        return out

    def respond(self, probabilities: np.ndarray) -> dict:
        order = np.argsort(probabilities)[::-1][:TOP_K]
        return {"labels": [{"label": self.labels[i], "score": float(probabilities[i])} for i in order]}
