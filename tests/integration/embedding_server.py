"""A real server on loopback (uvicorn in a thread, gRPC on a port of its own) for the dimensions and encodings
tests: `mat`, a bundle with image, text, audio and video encoders trained (its manifest says) for the 4-d prefix
of its 8-d joint space, with int8 / uint8 ranges; and `plain`, a text-only bundle without the block (an older
bundle: only 8-d, no ranges). What every protocol must answer is computed here from v1's full-dim answer with
service/embedding_types.py, so a test compares numbers, not shapes."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import numpy as np

from service.embedding_types import DTYPES, quantize, ranges_for
from tests.bundles import build_bundle, joint_space_for, sample_inputs
from tests.integration.conftest import fast_settings
from tests.integration.live import ThreadedServer, free_port

TRAINED, PLAIN, DIM, PREFIX = "mat", "plain", 8, 4
TEXTS = ["one two", "three and four", "zero"]


def serve(root: Path) -> ThreadedServer:
    """The two bundles under `root`, served (enter the result); `grpc_url` set."""
    modalities = ("image", "text", "audio", "video")
    build_bundle(root, TRAINED, "1", modalities=modalities, dim=DIM, golden=False, joint_space=joint_space_for(DIM))
    build_bundle(root, PLAIN, "1", modalities=("text",), dim=DIM, golden=False)
    settings = fast_settings(root).model_copy(update={"grpc_port": free_port()})
    server = ThreadedServer(settings)
    server.grpc_url = f"127.0.0.1:{settings.grpc_port}"
    return server


def prefix(vectors, dim: int = PREFIX) -> np.ndarray:
    """What `dimensions=dim` must answer for full-dim unit vectors: their first `dim` values, re-normalised."""
    head = np.asarray(vectors, np.float64)[..., :dim]
    return head / np.linalg.norm(head, axis=-1, keepdims=True)


def encoded(live, vectors, kind: str, dim: int = PREFIX, model: str = TRAINED) -> np.ndarray:
    """`kind` of the re-normalised prefix, with the model's calibrated ranges (quantize of the float answer)."""
    manifest = live.app.state.context.registry.get(model).bundle.manifest
    return quantize(prefix(vectors, dim).astype(np.float32), kind, ranges_for(manifest, dim))


def from_base64(text: str, kind: str = "float") -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=DTYPES[kind])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def item(seed: int, *modalities: str) -> dict:
    """A v1 JSON item of the sample's modalities (media base64)."""
    sample = sample_inputs(seed)
    return {m: sample[m] if m == "text" else b64(sample[m]) for m in modalities}


def v1_embed(live, items: list[dict], model: str = TRAINED, **query) -> httpx.Response:
    return httpx.post(f"{live.base_url}/v1/models/{model}/embed", json={"inputs": items}, params=query, timeout=60)


def v1_full(live, items: list[dict], model: str = TRAINED) -> list[dict]:
    """v1's answer without options: every result's fused and slot embeddings at the full dim."""
    response = v1_embed(live, items, model)
    assert response.status_code == 200, response.text
    assert response.json()["dim"] == DIM
    return response.json()["results"]
