"""Train → evaluate → export a tiny text + image model with the default Matryoshka prefixes: the manifest's
joint_space holds the trained dims, ranges for every supported dim and a zero-shot temperature; the search
figures are in the metrics and the card; and the server's text slot embedding of each label name (what
zero-shot scores against) equals the embedding the export fitted the temperature with, within 1e-4."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.integration.conftest import fast_settings, serving

pytestmark = pytest.mark.slow

COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 60, 220)}
TEMPLATES = ("a {} square", "the {} ball", "a bright {} car", "{} paint on a wall", "a {} flower", "my {} shirt",
             "a {} door", "the {} cup", "a dark {} stone", "a {} kite")  # fmt: skip
SPLIT = ["train"] * 6 + ["val"] * 2 + ["test"] * 2


def square(rgb: tuple[int, int, int], seed: int) -> bytes:
    from PIL import Image

    noise = np.random.default_rng(seed).integers(-25, 25, (48, 48, 3))
    pixels = np.clip(np.asarray(rgb)[None, None, :] + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def write_dataset(root: Path) -> Path:
    """Every item a phrase and a colour square; a third of the training items only one of the two."""
    rows = []
    for k, (colour, rgb) in enumerate(COLOURS.items()):
        for i, template in enumerate(TEMPLATES):
            path = root / "images" / f"{colour}-{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(square(rgb, 10 * k + i))
            row = {"id": f"{colour}-{i}", "split": SPLIT[i], "label": colour, "text": template.format(colour),
                   "image": f"images/{path.name}"}  # fmt: skip
            if i in (1, 2):  # two training items a label with one modality only
                del row["image" if i == 1 else "text"]
            rows.append(row)
    (root / "dataset.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root / "dataset.jsonl"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    from training.__main__ import main

    root = tmp_path_factory.mktemp("search")
    previous = os.getcwd()
    os.chdir(root)
    try:
        write_dataset(root / "colours")
        flags = ["--config", "default", "--data", "colours/dataset.jsonl", "--name", "colours", "--cache-dir",
                 "cache", "--progress", "false", "--epochs", "5", "--golden-count", "2"]  # fmt: skip
        for command in ("train", "evaluate", "export"):
            assert main([command, *flags]) == 0
        yield root
    finally:
        os.chdir(previous)


def test_manifest_declares_the_joint_space(exported):
    from service.manifest import read_manifest

    manifest = read_manifest(exported / "models" / "colours" / "1" / "manifest.json")
    space = manifest.joint_space
    assert space.matryoshka_dims == [64, 128] and manifest.embedding_dim == 256
    assert {key: len(r.min) for key, r in space.quantization.items()} == {"64": 64, "128": 128, "256": 256}
    assert all(len(r.max) == len(r.min) for r in space.quantization.values())
    fit = space.zero_shot
    assert fit is not None and 0.001 <= fit.temperature <= 0.5 and fit.split == "val" and fit.n == 6
    assert fit.template == "{}" and 0 <= fit.ece <= 1 and 0 <= fit.ece_uncalibrated <= 1
    search = manifest.metrics["search"]
    assert list(search["retrieval"]) == ["64", "128", "256"] and list(search["encodings"]) == ["64", "256"]
    assert set(search["retrieval"]["64"]["pairs"]) == {"image->text", "text->image"}
    assert set(search["encodings"]["256"]) == {"float", "int8", "binary"}
    assert set(search["zero_shot"]) == {"image", "text", "image+text"}
    assert search["zero_shot_fit"]["temperature"] == pytest.approx(fit.temperature)
    card = (exported / "models" / "colours" / "1" / "model_card.md").read_text()
    assert "## Search" in card and "label R@1 64" in card and "zero-shot accuracy" in card


async def test_server_text_slot_of_a_label_equals_the_exports(exported):
    from training.data.specs import preprocess_for, served_preprocess
    from training.evaluate_search import label_embeddings
    from training.export import trained_encoder
    from training.model.fused import load_checkpoint

    model, _ = load_checkpoint(exported / "runs" / "colours" / "model.pt")
    labels = list(COLOURS)
    specs = served_preprocess(preprocess_for(model))
    expected = label_embeddings(trained_encoder(model, "text"), labels, specs)  # what the export fitted with
    async with serving(fast_settings(exported / "models")) as (_, client):
        response = await client.post("/v1/models/colours/embed", json={"inputs": [{"text": t} for t in labels]})
    assert response.status_code == 200, response.text
    served = np.array([result["text"] for result in response.json()["results"]], dtype=np.float32)
    np.testing.assert_allclose(served, expected, atol=1e-4)
