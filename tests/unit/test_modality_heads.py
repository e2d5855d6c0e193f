"""fusion.onnx's optional modality_logits [B,M,C] (classify?explain=true): the test bundles' graph against the
numpy reference, and the server's fusion component, which picks outputs by name and drops absent rows."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest

from service.engine.bundle import load_bundle
from service.engine.components import FusionComponent
from service.engine.pipeline import run_direct
from service.errors import BundleError
from service.items import PreparedItem
from service.manifest import read_manifest
from service.settings import Settings
from tests.bundle_reference import preprocess_item, reference_outputs
from tests.bundles import build_bundle, sample_inputs

SUBSETS = [("image", "text", "audio"), ("text",), ("image", "audio"), ("audio",), ("image", "text")]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"heads": build_bundle(root, "heads", "1"), "plain": build_bundle(root, "plain", "1", modality_heads=False)}


@pytest.fixture(scope="module")
def items() -> list[dict]:
    """Raw items with mixed modality subsets."""
    return [{m: sample_inputs(seed)[m] for m in subset} for seed, subset in enumerate(SUBSETS)]


def _onnx_fusion(bundle: Path, embeddings: list[dict], absent_value: float) -> dict[str, np.ndarray]:
    """fusion.onnx on one batch, absent slots filled with `absent_value` (present column 0) → outputs by name."""
    manifest = read_manifest(bundle / "manifest.json")
    modalities, dim = manifest.fusion.modalities, manifest.embedding_dim
    feeds = {f"{m}_embedding": np.full((len(embeddings), dim), absent_value, np.float32) for m in modalities}
    feeds["present"] = np.zeros((len(embeddings), len(modalities)), np.float32)  # [B, M]
    for row, item in enumerate(embeddings):
        for column, modality in enumerate(modalities):
            if modality in item:
                feeds[f"{modality}_embedding"][row] = item[modality]
                feeds["present"][row, column] = 1.0
    session = ort.InferenceSession(str(bundle / manifest.fusion.file), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("absent_value", [0.0, 5.0], ids=["zeros", "garbage"])
def test_onnx_modality_logits_match_the_reference_for_present_modalities(bundles, items, absent_value):
    expected = [reference_outputs(bundles["heads"], item) for item in items]
    embeddings = [{m: np.asarray(e, np.float32) for m, e in ref["embeddings"].items()} for ref in expected]
    heads = _onnx_fusion(bundles["heads"], embeddings, absent_value)["modality_logits"]
    assert heads.shape == (len(items), 3, 4) and heads.dtype == np.float32
    for row, (item, ref) in enumerate(zip(items, expected, strict=True)):
        assert sorted(ref["modality_probabilities"]) == sorted(item)  # the reference has present modalities only
        for column, modality in enumerate(("image", "text", "audio")):
            if modality in item:  # rows of absent modalities are meaningless
                probabilities = _softmax(heads[row, column])
                np.testing.assert_allclose(probabilities, ref["modality_probabilities"][modality], atol=1e-5, rtol=0)


def test_golden_examples_carry_modality_probabilities_only_with_heads(bundles):
    heads, plain = (read_manifest(bundles[k] / "manifest.json") for k in ("heads", "plain"))
    assert all(sorted(g.outputs.modality_probabilities) == sorted(g.inputs.modalities()) for g in heads.golden)
    assert [s.name for s in plain.fusion.outputs] == ["logits", "fused"] and not plain.fusion.has_modality_logits
    assert all(g.outputs.modality_probabilities == {} for g in plain.golden)


def test_server_fusion_softmaxes_present_rows_and_nothing_without_heads(bundles, items):
    settings = Settings(model_dir=bundles["heads"].parent.parent, providers="cpu", intra_op_threads=1)
    for name, bundle_dir in bundles.items():
        bundle = load_bundle(bundle_dir, settings)
        prepared = [PreparedItem(preprocess_item(bundle_dir, item)) for item in items]
        results = run_direct(bundle.encoders, bundle.fusion, prepared)
        for item, result in zip(items, results, strict=True):
            expected = reference_outputs(bundle_dir, item)["modality_probabilities"]
            assert sorted(result.modality_probabilities) == (sorted(item) if name == "heads" else [])
            for modality, probabilities in expected.items():
                np.testing.assert_allclose(result.modality_probabilities[modality], probabilities, atol=1e-5, rtol=0)


def _stub_fusion(bundle: Path, outputs: dict[str, np.ndarray]) -> FusionComponent:
    """A FusionComponent whose "session" answers `outputs`, in that (name → array) order."""
    manifest = read_manifest(bundle / "manifest.json")
    model = SimpleNamespace(output_names=list(outputs), run=lambda feeds: list(outputs.values()))
    return FusionComponent(model, manifest.fusion, manifest.embedding_dim)


def test_server_fusion_picks_outputs_by_name_not_position(bundles):
    logits, fused, heads = np.ones((2, 4)), np.full((2, 8), 2.0), np.arange(24.0).reshape(2, 3, 4)
    fusion = _stub_fusion(bundles["heads"], {"modality_logits": heads, "fused": fused, "logits": logits})
    first, second = fusion([{"text": np.zeros(8)}, {"image": np.zeros(8), "audio": np.zeros(8)}])
    np.testing.assert_allclose(first.probabilities, _softmax(logits[0]))
    np.testing.assert_array_equal(first.fused, fused[0])
    assert list(first.modality_probabilities) == ["text"]
    assert list(second.modality_probabilities) == ["image", "audio"]
    np.testing.assert_allclose(first.modality_probabilities["text"], _softmax(heads[0, 1]))
    np.testing.assert_allclose(second.modality_probabilities["audio"], _softmax(heads[1, 2]))


def test_a_modality_logits_output_of_the_wrong_shape_is_a_bundle_error(bundles):
    wrong = {"logits": np.ones((1, 4)), "fused": np.ones((1, 8)), "modality_logits": np.ones((1, 4))}
    with pytest.raises(BundleError, match=r"modality_logits has shape \(1, 4\), expected \(1, 3, 4\)"):
        _stub_fusion(bundles["heads"], wrong)([{"text": np.zeros(8)}])
