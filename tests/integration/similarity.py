"""What the rerank and score tests share (test_rerank.py, test_rerank_serving.py): their bundles, items, and the
server's own /v1/embeddings answers that every score must equal."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np

from tests.bundles import build_bundle, joint_space_for, sample_inputs
from tests.integration.protocols import b64

MAX_DOCUMENTS = 4
TEMPERATURE = 0.05
DOCUMENTS = ["zero one", "two three", "one", "three zero two"]
IMAGE, AUDIO = sample_inputs(1)["image"], sample_inputs(2)["audio"]
IMAGE_TEXT = [
    {"type": "text", "text": "one two"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(IMAGE)}},
]
AUDIO_ONLY = [{"type": "input_audio", "input_audio": {"data": b64(AUDIO), "format": "wav"}}]
BAD_IMAGE = [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(b"not an image")}}]


def build_models(root: Path) -> Path:
    """tiny: a bundle with a zero-shot temperature; plain: the same weights without one."""
    build_bundle(root, "tiny", "1", joint_space=joint_space_for(8, temperature=TEMPERATURE))
    build_bundle(root, "plain", "1", joint_space=joint_space_for(8, temperature=None))
    return root


def post(live, path: str, body: dict) -> httpx.Response:
    return httpx.post(live.base_url + path, json=body, timeout=30)


def embeddings(live, model: str, inputs: list) -> np.ndarray:
    response = post(live, "/v1/embeddings", {"model": model, "input": inputs})
    assert response.status_code == 200, response.text
    rows = np.array([entry["embedding"] for entry in response.json()["data"]], dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def expected_cosines(live, model: str, query, documents: list) -> np.ndarray:
    rows = embeddings(live, model, [query, *documents])
    return rows[1:] @ rows[0]
