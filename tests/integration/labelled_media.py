"""The encoder-family tests' shared parts: small labelled datasets (split 6 / 2 / 2 per label), and the check
that a trained run's exported model answers over HTTP as its torch encoder computes."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from tests.integration.conftest import fast_settings, serving

SPLIT = ["train"] * 6 + ["val"] * 2 + ["test"] * 2


def write_media_dataset(root: Path, modality: str, classes: dict, make: Callable[[object, int], bytes],
                        suffix: str) -> Path:  # fmt: skip
    """root/dataset.jsonl with one `modality` file per item under root/<modality>/, made by make(class value, seed)."""
    rows = []
    for k, (label, value) in enumerate(classes.items()):
        for i, split in enumerate(SPLIT):
            path = root / modality / f"{label}-{i}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(make(value, 100 * k + i))
            rows.append({"id": f"{label}-{i}", "split": split, "label": label, modality: f"{modality}/{path.name}"})
    (root / "dataset.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root / "dataset.jsonl"


def torch_embeddings(run: Path, modality: str, contents: list[bytes]) -> np.ndarray:
    """The run's trained encoder on `contents` (media bytes or UTF-8 text), with the bundle's preprocessing."""
    from training.data.features import collate, decode
    from training.data.specs import preprocess_for
    from training.export import trained_encoder
    from training.model.fused import load_checkpoint

    model, _ = load_checkpoint(run / "model.pt")
    encoder, specs = trained_encoder(model, modality), preprocess_for(model)
    with torch.no_grad():
        return encoder(*collate(modality, [decode(c, modality, specs) for c in contents])).numpy()


async def assert_served_like_torch(root: Path, name: str, modality: str, contents: list[bytes]) -> None:
    """models/<name> under `root`, served: embeddings of `contents` in one request equal torch's within 1e-4
    (train → export → serve parity), and the second item alone equals it in the batch within 1e-5."""
    expected = torch_embeddings(root / "runs" / name, modality, contents)
    encode = (lambda c: c.decode()) if modality == "text" else (lambda c: base64.b64encode(c).decode())
    inputs = [{modality: encode(c)} for c in contents]
    async with serving(fast_settings(root / "models")) as (_, client):
        response = await client.post(f"/v1/models/{name}/embed", json={"inputs": inputs})
        assert response.status_code == 200, response.text
        served = np.array([result[modality] for result in response.json()["results"]])
        alone = await client.post(f"/v1/models/{name}/embed", json={"inputs": inputs[1:2]})
    np.testing.assert_allclose(served, expected, atol=1e-4)
    np.testing.assert_allclose(alone.json()["results"][0][modality], served[1], atol=1e-5)  # batch invariance
