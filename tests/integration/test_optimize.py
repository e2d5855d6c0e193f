"""`fusionserve optimize`: a new bundle version with optimised encoder graphs that must pass the golden replay."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from bundletools import graph_passes, optimize
from service.cli import main
from service.engine.bundle import load_bundle
from service.engine.check import check_bundle
from service.engine.pipeline import run_direct
from service.items import RawItem
from service.manifest import read_manifest, sha256_file
from service.preprocess.prepare import prepare_item
from tests.bundles import build_bundle, sample_inputs
from tests.integration.conftest import fast_settings


@pytest.fixture(autouse=True)
def short_timing(monkeypatch):
    """The speed comparison is not what these tests check: keep it to a few calls."""
    monkeypatch.setattr(optimize, "TIMING_ROUNDS", 1)
    monkeypatch.setattr(optimize, "TIMING_MIN_S", 0.0)


@pytest.fixture
def source(tmp_path) -> Path:
    return build_bundle(tmp_path / "models", "tiny", "1")


def corrupting_pass(plain: Path, target: Path) -> dict[str, int]:
    """An 'optimiser' that changes the maths: every float weight + 0.5 (a scale alone would vanish in the
    encoders' L2 normalisation)."""
    model = onnx.load(str(plain))
    for i, tensor in enumerate(model.graph.initializer):
        array = numpy_helper.to_array(tensor)
        if array.dtype == np.float32 and array.size > 1:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array + 0.5, tensor.name))
    onnx.save(model, str(target))
    return {"Corrupted": 1}


def outputs(bundle_dir: Path, settings, seeds=(1, 2, 3)) -> list:
    """Fused outputs and embeddings for sample items the golden examples do not contain."""
    bundle = load_bundle(bundle_dir, settings)
    raws = [RawItem(**sample_inputs(seed)) for seed in seeds]
    items = [prepare_item(raw, bundle.manifest, bundle.tokenizer, settings) for raw in raws]
    return run_direct(bundle.encoders, bundle.fusion, items)


def test_writes_the_next_version_which_passes_the_servers_check(source, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["optimize", str(source), "--min-speedup", "0", "--json"])  # 0: keep every graph with parity
    report = json.loads(capsys.readouterr().out)
    new = source.parent / "2"
    assert stop.value.code == 0 and report["ok"] and report["bundle"] == str(new)
    assert sorted(p.name for p in source.parent.iterdir()) == ["1", "2"]  # no staging directory left
    manifest, original = read_manifest(new / "manifest.json"), read_manifest(source / "manifest.json")
    assert (manifest.name, manifest.version) == ("tiny", "2")
    assert manifest.files.keys() == original.files.keys()
    assert all(sha256_file(new / path) == digest for path, digest in manifest.files.items())
    assert manifest.golden == original.golden  # torch's (here: numpy's) outputs, replayed again
    done = manifest.metrics["optimized"]["encoders"]
    assert sorted(done) == ["audio", "image", "text"] and all(d["kept"] for d in done.values())
    assert all(d["max_abs_diff"] <= original.golden_tolerance for d in done.values())
    # the basic pass really rewrites the tiny image graph, so a new file (and sha256) is installed
    assert done["image"]["nodes"][1] < done["image"]["nodes"][0]
    assert manifest.files["image_encoder.onnx"] != original.files["image_encoder.onnx"]
    settings = fast_settings(source.parent.parent)
    assert check_bundle(new, settings)["ok"]
    for before, after in zip(outputs(source, settings), outputs(new, settings), strict=True):
        np.testing.assert_allclose(after.probabilities, before.probabilities, atol=original.golden_tolerance)
        np.testing.assert_allclose(after.fused, before.fused, atol=original.golden_tolerance)
        for modality, embedding in before.embeddings.items():
            np.testing.assert_allclose(after.embeddings[modality], embedding, atol=original.golden_tolerance)


def test_fp16_version_carries_its_stated_tolerance_and_passes_the_servers_check(source, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["optimize", str(source), "--fp16", "--fp16-tolerance", "0.02", "--json"])  # speed not required
    report = json.loads(capsys.readouterr().out)
    new, original = source.parent / "2", read_manifest(source / "manifest.json")
    assert stop.value.code == 0 and report["ok"] and report["precision"] == "fp16"
    manifest = read_manifest(new / "manifest.json")
    assert manifest.golden_tolerance == 0.02 and "fp16 encoders of version 1" in manifest.description
    done = manifest.metrics["optimized"]["encoders"]
    assert all(d["kept"] and d["optimizer"] == "fp16" and d["max_abs_diff"] <= 0.02 for d in done.values())
    for modality in ("image", "text", "audio"):
        graph = onnx.load(str(new / f"{modality}_encoder.onnx"))
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.graph.initializer), modality
        assert graph.graph.input[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT16  # fp32 edges
    settings = fast_settings(source.parent.parent)
    assert check_bundle(new, settings)["ok"]  # the golden replay, held to the stated tolerance
    for before, after in zip(outputs(source, settings), outputs(new, settings), strict=True):
        np.testing.assert_allclose(after.probabilities, before.probabilities, atol=0.02)
        np.testing.assert_allclose(after.fused, before.fused, atol=0.02)
    assert original.golden_tolerance < 0.02  # fp16 needed the looser bound: fp32 passes keep the bundle's


def test_fp16_outside_its_tolerance_writes_nothing(source):
    settings = fast_settings(source.parent.parent)
    with pytest.raises(optimize.OptimizeError, match="no version written") as refused:
        optimize.optimize_bundle(source, settings, min_speedup=0.0, fp16_tolerance=1e-9)
    reasons = [d["candidates"][0]["reason"] for d in refused.value.report["encoders"].values()]
    assert all("> tolerance 1e-09" in reason for reason in reasons)
    assert sorted(p.name for p in source.parent.iterdir()) == ["1"]


def test_out_version_is_honoured_and_never_overwrites(source):
    settings = fast_settings(source.parent.parent)
    report = optimize.optimize_bundle(source, settings, out_version="7", min_speedup=0.0)
    assert report["bundle"] == str(source.parent / "7") and read_manifest(source.parent / "7" / "manifest.json")
    with pytest.raises(optimize.OptimizeError, match="already exists"):
        optimize.optimize_bundle(source, settings, out_version="7")
    assert optimize.next_version(source.parent) == "8"


def test_a_candidate_that_breaks_parity_is_not_installed(source, monkeypatch):
    monkeypatch.setitem(graph_passes.PASSES, "image", [("corrupt", corrupting_pass)])
    settings = fast_settings(source.parent.parent)
    report = optimize.optimize_bundle(source, settings, min_speedup=0.0)
    image = report["encoders"]["image"]
    assert not image["kept"] and "tolerance" in image["candidates"][0]["reason"]
    new = source.parent / "2"
    assert sha256_file(new / "image_encoder.onnx") == sha256_file(source / "image_encoder.onnx")
    assert check_bundle(new, settings)["ok"]


def test_a_version_failing_the_golden_replay_is_not_left_behind(source, monkeypatch, capsys):
    """If a broken graph got past the per-encoder comparison, the server's check still stops it."""
    monkeypatch.setitem(graph_passes.PASSES, "image", [("corrupt", corrupting_pass)])
    monkeypatch.setattr(optimize, "_max_diff", lambda a, b: 0.0)  # the comparison is fooled
    with pytest.raises(SystemExit) as stop:
        main(["optimize", str(source), "--min-speedup", "0"])
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert stop.value.code == 1 and last.startswith("FAILED: ") and "differ from the reference" in last
    assert sorted(p.name for p in source.parent.iterdir()) == ["1"]  # neither version 2 nor its staging


def test_no_version_is_written_when_no_graph_is_kept(source, monkeypatch, capsys):
    """A copy of version 1 under a new number would only make servers reload the same graphs."""
    for modality in ("image", "text", "audio"):
        monkeypatch.setitem(graph_passes.PASSES, modality, [("corrupt", corrupting_pass)])
    with pytest.raises(SystemExit) as stop:
        main(["optimize", str(source), "--min-speedup", "0", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert stop.value.code == 1 and not report["ok"] and "no version written" in report["reason"]
    assert not any(done["kept"] for done in report["encoders"].values())
    assert sorted(p.name for p in source.parent.iterdir()) == ["1"]


def test_a_bundle_without_golden_examples_is_refused(tmp_path):
    bundle = build_bundle(tmp_path / "models", "plain", "1", golden=False)
    with pytest.raises(optimize.OptimizeError, match="no golden examples"):
        optimize.optimize_bundle(bundle, fast_settings(tmp_path / "models"))
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["1"]


def test_operators_missing_on_an_execution_provider_are_flagged(tmp_path):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    nodes = [
        helper.make_node("Gelu", ["x"], ["g"], domain="com.microsoft"),  # CPU and CUDA: fine
        helper.make_node("FusedGemm", ["g", "g"], ["y"], domain="com.microsoft"),  # CPU only
    ]
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]))
    onnx.save(model, str(tmp_path / "m.onnx"))
    assert graph_passes.foreign_ops(tmp_path / "m.onnx") == ["com.microsoft:FusedGemm"]
