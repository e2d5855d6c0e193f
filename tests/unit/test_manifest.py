"""service/manifest.py: the bundle contract rejects every malformed manifest with a reason."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from service.manifest import Manifest, read_manifest, sha256_file, write_manifest

SPEC = {"name": "embedding", "dtype": "float32", "shape": ["batch", 4]}


def valid() -> dict:
    return {
        "name": "demo",
        "version": "3",
        "created": "2026-11-22T00:00:00+00:00",
        "labels": ["a", "b"],
        "embedding_dim": 4,
        "encoders": {
            "text": {
                "file": "text_encoder.onnx",
                "outputs": [SPEC],
                "inputs": [
                    {"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]},
                    {"name": "attention_mask", "dtype": "int64", "shape": ["batch", "sequence"]},
                ],
            }
        },
        "fusion": {
            "file": "fusion.onnx",
            "modalities": ["text"],
            "inputs": [
                {"name": "text_embedding", "dtype": "float32", "shape": ["batch", 4]},
                {"name": "present", "dtype": "float32", "shape": ["batch", 1]},
            ],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 2]}, {**SPEC, "name": "fused"}],
        },
        "files": {"text_encoder.onnx": "0" * 64, "fusion.onnx": "1" * 64, "tokenizer.json": "2" * 64},
        "golden": [{"inputs": {"text": "hi"}, "outputs": {"probabilities": [0.5, 0.5], "fused": [0, 0, 0, 1]}}],
    }


def test_valid_manifest_round_trips(tmp_path):
    manifest = Manifest.model_validate(valid())
    assert manifest.modalities() == ["text"]
    assert manifest.referenced_files() == ["fusion.onnx", "text_encoder.onnx", "tokenizer.json"]
    write_manifest(manifest, tmp_path / "manifest.json")
    assert read_manifest(tmp_path / "manifest.json") == manifest


def with_heads(data: dict, shape=("batch", 1, 2)) -> dict:
    """Declare fusion's optional modality_logits output and golden per-modality probabilities."""
    data["fusion"]["outputs"].append({"name": "modality_logits", "dtype": "float32", "shape": list(shape)})
    data["golden"][0]["outputs"]["modality_probabilities"] = {"text": [0.25, 0.75]}
    return data


def test_modality_logits_are_optional_and_declared_by_name():
    plain = Manifest.model_validate(valid())
    assert not plain.fusion.has_modality_logits and plain.golden[0].outputs.modality_probabilities == {}
    heads = Manifest.model_validate(with_heads(valid()))
    assert heads.fusion.has_modality_logits and heads.fusion.output("modality_logits").shape == ["batch", 1, 2]
    assert heads.golden[0].outputs.modality_probabilities == {"text": [0.25, 0.75]}
    assert heads.schema_version == 1
    reordered = valid()  # the server picks fusion outputs by name, so their order is free
    reordered["fusion"]["outputs"].reverse()
    assert Manifest.model_validate(reordered).fusion.output("logits").shape == ["batch", 2]


def broken(change) -> dict:
    data = copy.deepcopy(valid())
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["fusion"].update(file="/etc/passwd"), "must be relative"),
        (lambda d: d["fusion"].update(file="../other/fusion.onnx"), "leaves the bundle"),
        (lambda d: d["fusion"].update(file="C:/models/fusion.onnx"), "must be relative"),
        (lambda d: d["encoders"]["text"].update(file="a/../../x.onnx"), "leaves the bundle"),
        (lambda d: d["files"].update({"../x": "0" * 64}), "leaves the bundle"),
        (lambda d: d["files"].pop("tokenizer.json"), "without a sha256 entry"),
        (lambda d: d.update(encoders={}), "at least one encoder"),
        (lambda d: d["fusion"].update(modalities=["text", "audio"]), "fusion.modalities"),
        (lambda d: d.update(labels=["only"]), "at least 2"),
        (lambda d: d.update(name="Bad Name"), "pattern"),
        (lambda d: d.update(version="v1"), "pattern"),
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d.update(surprise=1), "Extra inputs"),
        (lambda d: d["encoders"]["text"]["inputs"][0].update(dtype="complex64"), "dtype"),
        (lambda d: d["golden"][0]["outputs"].update(probabilities=[1.0]), "one score per label"),
        (lambda d: d["golden"][0].update(inputs={}), "at least one input"),
        (
            lambda d: d["golden"][0]["outputs"].update(embeddings={"audio": [0, 0, 0, 1]}),
            "not among its inputs",
        ),
        (lambda d: d.update(golden_tolerance=0), "greater than 0"),
        (lambda d: d["fusion"]["outputs"][1].update(name="embedding"), "must name ['logits', 'fused']"),
        (lambda d: d["fusion"]["outputs"].append(d["fusion"]["outputs"][0]), "once each"),
        (lambda d: with_heads(d, shape=("batch", 2, 2)), "must have shape [batch, 1, 2]"),
        (lambda d: with_heads(d, shape=("batch", 2)), "must have shape [batch, 1, 2]"),
        (
            lambda d: d["golden"][0]["outputs"].update(modality_probabilities={"text": [1.0]}),
            "modality_probabilities must have one score per label",
        ),
        (
            lambda d: with_heads(d)["golden"][0]["outputs"].update(modality_probabilities={"audio": [0.5, 0.5]}),
            "modality_probabilities for ['audio'], not among its inputs",
        ),
        (
            lambda d: d["golden"][0]["outputs"].update(modality_probabilities={"text": [0.5, 0.5]}),
            "need a fusion output named modality_logits",
        ),
    ],
    ids=[
        "absolute",
        "dotdot",
        "drive",
        "nested-dotdot",
        "files-escape",
        "unlisted-file",
        "no-encoder",
        "fusion-mismatch",
        "one-label",
        "name",
        "version",
        "schema",
        "extra-key",
        "dtype",
        "golden-probs",
        "golden-empty",
        "golden-embedding-absent",
        "tolerance",
        "fusion-output-names",
        "fusion-output-twice",
        "heads-shape",
        "heads-rank",
        "golden-heads-length",
        "golden-heads-absent",
        "golden-heads-undeclared",
    ],
)
def test_invalid_manifests_are_rejected_with_a_reason(change, message):
    with pytest.raises(ValidationError) as raised:
        Manifest.model_validate(broken(change))
    assert message in str(raised.value)


def test_sha256_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
