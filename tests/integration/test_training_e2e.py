"""End to end: tiny tridigits (≈200 items) → train 2 epochs → export → the real FastAPI app serves the bundle,
and its HTTP answers equal the torch model's for the same raw inputs (several modality subsets)."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from tests.integration.conftest import fast_settings, serving  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is needed to build tridigits"),
]
SUBSETS = [("image", "text", "audio"), ("image",), ("audio",), ("text",), ("image", "audio"), ("text", "audio")]
MIME = {"image": ("digit.png", "image/png"), "audio": ("digit.wav", "audio/wav")}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Run `build-default` on a tiny dataset; return (config, torch model, torch encoders, test examples)."""
    from training.__main__ import main
    from training.config import load_config
    from training.data.dataset import load_dataset
    from training.export import trained_encoder
    from training.model.fused import load_checkpoint

    root = tmp_path_factory.mktemp("e2e")
    overrides = dict(data=str(root / "data" / "dataset.jsonl"), out_dir=str(root / "run"),
                     cache_dir=str(root / "cache"), models_dir=str(root / "models"), demo_scale=0.05, epochs=2,
                     compare_fusions=False, progress=False, golden_count=3, quantize="int8")  # fmt: skip
    argv = ["build-default", "--config", "tridigits"]
    for key, value in overrides.items():
        argv += [f"--{key.replace('_', '-')}", str(value).lower() if isinstance(value, bool) else str(value)]
    assert main(argv) == 0
    cfg = load_config("tridigits", **overrides)
    model, _ = load_checkpoint(root / "run" / "model.pt")
    encoders = {m: trained_encoder(model, m) for m in model.encoders}  # a video's slots use these too
    test = [e for e in load_dataset(cfg.data, check_media=False) if e.split == "test"]
    return cfg, model, encoders, test


def bundle(cfg) -> Path:
    return cfg.model_dir() / "1"  # a fresh models directory: export published the first version


def cases(test: list) -> list[tuple[object, tuple[str, ...]]]:
    """One test item per subset, taken from the end (golden examples come from the start)."""
    chosen = []
    for subset in SUBSETS:
        item = next(e for e in reversed(test) if all(getattr(e, m) is not None for m in subset))
        chosen.append((item, subset))
    return chosen


def torch_outputs(built, example, subset) -> dict:
    from training.data.specs import default_preprocess
    from training.export import torch_reference

    _, model, encoders, _ = built
    with torch.no_grad():
        golden = torch_reference(model, encoders, example, subset, default_preprocess())
    return golden.outputs.model_dump()


def raw(example, modality: str):
    return example.text if modality == "text" else getattr(example, modality).read_bytes()


async def test_classify_multipart_matches_torch(built):
    cfg, model, _, test = built
    async with serving(fast_settings(Path(cfg.models_dir))) as (_, client):
        for example, subset in cases(test):
            files = {m: (*MIME[m][:1], raw(example, m), MIME[m][1]) if m in MIME else (None, raw(example, m))
                     for m in subset}  # fmt: skip
            response = await client.post(f"/v1/models/{cfg.name}/classify?top_k=10", files=files)
            assert response.status_code == 200, response.text
            (result,) = response.json()["results"]
            assert result["modalities"] == list(subset)
            scores = {row["label"]: row["score"] for row in result["labels"]}
            expected = torch_outputs(built, example, subset)["probabilities"]
            labels = [str(d) for d in range(10)]
            assert max(abs(scores[label] - p) for label, p in zip(labels, expected, strict=True)) <= 1e-4, subset


async def test_embed_json_batch_matches_torch(built):
    cfg, model, _, test = built
    chosen = cases(test)
    inputs = [
        {m: raw(e, m) if m == "text" else base64.b64encode(raw(e, m)).decode("ascii") for m in subset}
        for e, subset in chosen
    ]
    async with serving(fast_settings(Path(cfg.models_dir))) as (_, client):
        response = await client.post(f"/v1/models/{cfg.name}/embed", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dim"] == model.dim
    for (example, subset), result in zip(chosen, body["results"], strict=True):
        expected = torch_outputs(built, example, subset)
        assert np.abs(np.asarray(result["fused"]) - expected["fused"]).max() <= 1e-4, subset
        for m in subset:
            assert np.abs(np.asarray(result[m]) - expected["embeddings"][m]).max() <= 1e-4, (subset, m)


async def test_explain_gives_each_modality_heads_answer_as_torch_computes_it(built):
    cfg, _, _, test = built
    labels = [str(d) for d in range(10)]
    async with serving(fast_settings(Path(cfg.models_dir))) as (_, client):
        for example, subset in cases(test)[:3]:
            files = {m: (*MIME[m][:1], raw(example, m), MIME[m][1]) if m in MIME else (None, raw(example, m))
                     for m in subset}  # fmt: skip
            response = await client.post(f"/v1/models/{cfg.name}/classify?explain=true", files=files)
            assert response.status_code == 200, response.text
            (result,) = response.json()["results"]
            expected = torch_outputs(built, example, subset)["modality_probabilities"]
            assert [e["modality"] for e in result["evidence"]] == list(subset)
            for evidence in result["evidence"]:
                probabilities = expected[evidence["modality"]]
                assert evidence["label"] == labels[int(np.argmax(probabilities))]
                assert abs(evidence["score"] - max(probabilities)) <= 1e-4
                assert evidence["agrees"] == (evidence["label"] == result["labels"][0]["label"])
            assert result["agreement"] == all(e["agrees"] for e in result["evidence"])


def test_bundle_manifest_records_calibration_and_robustness(built):
    from service.manifest import read_manifest

    metrics = read_manifest(bundle(built[0]) / "manifest.json").metrics
    calibration = metrics["calibration"]
    assert set(calibration["temperatures"]) == {"fused", "image", "text", "audio", "video_frames", "video_audio"}
    assert 0 <= calibration["ece_after"] <= 1 and 0 <= calibration["ece_before"] <= 1
    robustness = metrics["robustness"]
    assert len(robustness["accuracy"]["image"]) == 18  # polarity x filter x size
    assert any("held out" in group for group in robustness["accuracy"]["audio"])
    assert {"numeral", "en", "de"} <= set(robustness["accuracy"]["text"])
    assert len(robustness["label_recall@1"]) == 6  # every ordered modality pair


def test_bundle_manifest_records_parity(built):
    from service.manifest import read_manifest

    cfg = built[0]
    manifest = read_manifest(bundle(cfg) / "manifest.json")
    assert manifest.metrics["parity"]["server_golden_max_abs_diff"] <= 1e-4
    clips = [g for g in manifest.golden if g.inputs.video_b64]  # tridigits has clips: golden ones besides the 3
    assert len(manifest.golden) - len(clips) == 3 and manifest.fusion.strategy == cfg.fusion
    assert clips and all(g.outputs.segments for g in clips)
    image = manifest.encoders.image  # the graph normalises the pixels: uint8 through batching and processes
    assert image.preprocess.normalise == "graph" and image.inputs[0].dtype == "uint8"
    run = manifest.metrics["training"]["run"]  # where the bundle came from (docs/training.md)
    assert run["name"] == cfg.name and run["dataset"]["labels"] == manifest.labels
    assert set(manifest.metrics["subsets"]) >= {"+".join(s) for s in SUBSETS} | {"image+text"}
    assert set(manifest.metrics["video"]["test"]["clip"]) == {"video_frames", "video_audio", "video_frames+video_audio"}
    assert (bundle(cfg) / "model_card.md").read_text().count("|") > 50


def test_int8_bundle_is_servable_and_reports_its_accuracy_change(built):
    from service.manifest import read_manifest
    from training.bundle_check import server_check

    cfg = built[0]
    int8 = Path(cfg.models_dir) / f"{cfg.name}-int8" / bundle(cfg).name
    report = server_check(int8)  # the server's loader, in its own process
    assert report["ok"], report["reason"]
    comparison = read_manifest(int8 / "manifest.json").metrics["int8_vs_fp32"]
    assert comparison["quantized"] == ["text", "audio"]
    for subset in SUBSETS:  # tiny test split: a few items may flip, a broken quantisation flips many
        name = "+".join(subset)
        assert abs(comparison["int8"][name]["accuracy"] - comparison["fp32"][name]["accuracy"]) <= 0.15, name
