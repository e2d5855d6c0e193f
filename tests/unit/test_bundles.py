"""The test-bundle factory (tests/bundles.py): valid manifests, real ONNX graphs that onnxruntime runs
with the same results as the numpy reference, and batch invariance under padding."""

from __future__ import annotations

import base64
import io
import time
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile
from tokenizers import Tokenizer

from service.manifest import read_manifest, sha256_file
from tests import bundle_graphs
from tests.bundle_reference import preprocess_item, reference_outputs
from tests.bundles import DEFAULT_MODALITIES as MODALITIES
from tests.bundles import build_bundle, sample_inputs

ORT_DTYPES = {"float32": "tensor(float)", "int64": "tensor(int64)"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build_bundle(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def items() -> list[dict]:
    return [sample_inputs(seed) for seed in range(5)]


# ------------------------------------------------------------------ a minimal ORT pipeline for the checks


@lru_cache(maxsize=64)
def _session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # 2-core CI machines; also keeps results reproducible
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _run(bundle: Path, file: str, feeds: dict) -> list[np.ndarray]:
    return _session(str(bundle / file)).run(None, feeds)


def _encoder_feeds(manifest, modality: str, payloads: list, *, pad: float = 0, extra: int = 0) -> dict:
    """Right-pad texts / audio to the longest item (+ extra cells) with `pad`, mask 0 on padding."""
    names = [s.name for s in getattr(manifest.encoders, modality).inputs]
    if modality == "image":
        return {names[0]: np.stack(payloads).astype(np.float32)}
    lengths = [p[0].shape[-1] if modality == "text" else p.shape[-1] for p in payloads]
    width = max(lengths) + extra
    mask = np.zeros((len(payloads), width), np.int64 if modality == "text" else np.float32)
    if modality == "text":
        values = np.full((len(payloads), width), int(pad), np.int64)
    else:
        values = np.full((len(payloads), payloads[0].shape[0], width), pad, np.float32)
    for row, (payload, length) in enumerate(zip(payloads, lengths, strict=True)):
        values[row, ..., :length] = payload[0] if modality == "text" else payload
        mask[row, :length] = payload[1] if modality == "text" else 1
    return {names[0]: values, names[1]: mask}


def _encode(bundle: Path, modality: str, payloads: list, **padding) -> np.ndarray:
    manifest = read_manifest(bundle / "manifest.json")
    feeds = _encoder_feeds(manifest, modality, payloads, **padding)
    return _run(bundle, getattr(manifest.encoders, modality).file, feeds)[0]


def _fuse(bundle: Path, embeddings: list[dict], absent_value: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    manifest = read_manifest(bundle / "manifest.json")
    modalities, dim = manifest.fusion.modalities, manifest.embedding_dim
    feeds = {f"{m}_embedding": np.full((len(embeddings), dim), absent_value, np.float32) for m in modalities}
    feeds["present"] = np.zeros((len(embeddings), len(modalities)), np.float32)
    for row, item in enumerate(embeddings):
        for column, modality in enumerate(modalities):
            if modality in item:
                feeds[f"{modality}_embedding"][row] = item[modality]
                feeds["present"][row, column] = 1.0
    logits, fused = _run(bundle, manifest.fusion.file, feeds)[:2]  # modality_logits: test_modality_heads.py
    return logits, fused


def _pipeline(bundle: Path, items: list[dict]) -> list[dict]:
    """Items (raw, any subsets) → per-modality batches → one fusion batch, like the server."""
    arrays = [preprocess_item(bundle, item) for item in items]
    embeddings: list[dict] = [{} for _ in items]
    for modality in MODALITIES:
        rows = [i for i, a in enumerate(arrays) if modality in a]
        if rows:
            batch = _encode(bundle, modality, [arrays[i][modality] for i in rows])
            for i, embedding in zip(rows, batch, strict=True):
                embeddings[i][modality] = embedding
    logits, fused = _fuse(bundle, embeddings)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    return [
        {"probabilities": p, "fused": f, "embeddings": e}
        for p, f, e in zip(probabilities, fused, embeddings, strict=True)
    ]


def _assert_close(actual: dict, expected: dict, atol: float) -> None:
    np.testing.assert_allclose(actual["probabilities"], expected["probabilities"], atol=atol, rtol=0)
    np.testing.assert_allclose(actual["fused"], expected["fused"], atol=atol, rtol=0)
    assert sorted(actual["embeddings"]) == sorted(expected["embeddings"])
    for modality, embedding in expected["embeddings"].items():
        np.testing.assert_allclose(actual["embeddings"][modality], embedding, atol=atol, rtol=0)


def _subset(item: dict, modalities) -> dict:
    return {m: v for m, v in item.items() if m in modalities}


# ------------------------------------------------------------------ manifest and graphs


def test_manifest_validates_and_hashes_every_file(bundle):
    manifest = read_manifest(bundle / "manifest.json")
    on_disk = {p.name for p in bundle.iterdir()} - {"manifest.json"}
    assert set(manifest.files) == on_disk
    assert all(manifest.files[name] == sha256_file(bundle / name) for name in on_disk)
    assert manifest.modalities() == list(MODALITIES) == manifest.fusion.modalities
    assert datetime.fromisoformat(manifest.created).tzinfo is not None
    assert [e.inputs.modalities() for e in manifest.golden] == [
        ["image", "text", "audio"],
        ["text"],
        ["image", "audio"],
    ]
    assert manifest.encoders.image.preprocess.size == 16 and manifest.encoders.audio.preprocess.n_mels == 80


def test_graphs_pass_checker_and_match_manifest_specs(bundle):
    manifest = read_manifest(bundle / "manifest.json")
    components = [getattr(manifest.encoders, m) for m in manifest.modalities()] + [manifest.fusion]
    for component in components:
        model = onnx.load(str(bundle / component.file))
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == bundle_graphs.OPSET
        session = _session(str(bundle / component.file))
        pairs = ((session.get_inputs(), component.inputs), (session.get_outputs(), component.outputs))
        for actual, specs in pairs:
            assert [(t.name, t.type, t.shape) for t in actual] == [
                (s.name, ORT_DTYPES[s.dtype], s.shape) for s in specs
            ]
    assert [s.name for s in manifest.fusion.inputs] == [
        "image_embedding",
        "text_embedding",
        "audio_embedding",
        "present",
    ]
    assert [s.name for s in manifest.fusion.outputs] == ["logits", "fused", "modality_logits"]
    assert manifest.fusion.outputs[2].shape == ["batch", 3, 4] and manifest.fusion.has_modality_logits


# ------------------------------------------------------------------ onnxruntime == numpy reference


def test_encoders_match_reference_on_padded_batches(bundle, items):
    arrays = [preprocess_item(bundle, item) for item in items]
    assert len({a["text"][0].shape[-1] for a in arrays}) > 1, "samples must have mixed text lengths"
    assert len({a["audio"].shape[-1] for a in arrays}) > 1, "samples must have mixed frame counts"
    expected = [reference_outputs(bundle, item)["embeddings"] for item in items]
    for modality in MODALITIES:
        batch = _encode(bundle, modality, [a[modality] for a in arrays])
        assert batch.shape == (len(items), 8) and batch.dtype == np.float32
        np.testing.assert_allclose(batch, [e[modality] for e in expected], atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)


def test_whole_items_with_mixed_subsets_match_reference(bundle, items):
    subsets = [MODALITIES, ("text",), ("image", "audio"), ("audio",), ("image", "text")]
    mixed = [_subset(item, subset) for item, subset in zip(items, subsets, strict=True)]
    for actual, item in zip(_pipeline(bundle, mixed), mixed, strict=True):
        _assert_close(actual, reference_outputs(bundle, item), atol=1e-5)
        assert abs(sum(actual["probabilities"]) - 1.0) < 1e-5


def test_golden_examples_replay_with_onnxruntime(bundle):
    manifest = read_manifest(bundle / "manifest.json")
    raw = [
        {
            "image": base64.b64decode(g.inputs.image_b64) if g.inputs.image_b64 else None,
            "audio": base64.b64decode(g.inputs.audio_b64) if g.inputs.audio_b64 else None,
            "text": g.inputs.text,
        }
        for g in manifest.golden
    ]
    raw = [{m: v for m, v in item.items() if v is not None} for item in raw]
    for actual, golden in zip(_pipeline(bundle, raw), manifest.golden, strict=True):
        _assert_close(actual, golden.outputs.model_dump(), atol=min(1e-5, manifest.golden_tolerance))


# ------------------------------------------------------------------ batch invariance


@pytest.mark.parametrize("modality", MODALITIES)
def test_encoders_are_batch_invariant_under_garbage_padding(bundle, items, modality):
    arrays = [preprocess_item(bundle, item)[modality] for item in items]
    lengths = [a[0].shape[-1] if modality == "text" else a.shape[-1] for a in arrays]  # image: width
    shortest = int(np.argmin(lengths))
    alone = _encode(bundle, modality, [arrays[shortest]])[0]
    # padded cells hold a valid token id / large finite values: the masks alone must exclude them
    padded = _encode(bundle, modality, arrays, pad=7 if modality == "text" else 1e3, extra=5)[shortest]
    np.testing.assert_allclose(padded, alone, atol=1e-6, rtol=0)


def test_fusion_is_batch_invariant_and_ignores_absent_slots(bundle, items):
    embeddings = [e["embeddings"] for e in _pipeline(bundle, items)]
    alone_logits, alone_fused = _fuse(bundle, [{"text": embeddings[0]["text"]}])
    mixed = [{"text": embeddings[0]["text"]}, embeddings[1], _subset(embeddings[2], ("image", "audio"))]
    logits, fused = _fuse(bundle, mixed, absent_value=5.0)  # absent slots hold garbage, present = 0
    np.testing.assert_allclose(logits[0], alone_logits[0], atol=1e-6, rtol=0)
    np.testing.assert_allclose(fused[0], alone_fused[0], atol=1e-6, rtol=0)


# ------------------------------------------------------------------ partial bundles, determinism, samples

PARTIAL = [("image",), ("text",), ("audio",), ("image", "text"), ("text", "audio")]


@pytest.mark.parametrize("modalities", PARTIAL)
def test_partial_bundles_build_validate_and_replay(tmp_path, items, modalities):
    bundle = build_bundle(tmp_path, "part", "3", modalities=modalities, dim=4, labels=("a", "b", "c"))
    manifest = read_manifest(bundle / "manifest.json")
    assert manifest.modalities() == list(modalities)
    assert [s.name for s in manifest.fusion.inputs] == [f"{m}_embedding" for m in modalities] + ["present"]
    assert not any((bundle / f"{m}_encoder.onnx").exists() for m in MODALITIES if m not in modalities)
    assert (bundle / "tokenizer.json").exists() == ("text" in modalities)
    assert len(manifest.golden) == 3
    assert all(set(g.inputs.modalities()) <= set(modalities) for g in manifest.golden)
    item = _subset(items[0], modalities)
    _assert_close(_pipeline(bundle, [item])[0], reference_outputs(bundle, item), atol=1e-5)
    with pytest.raises(ValueError):
        reference_outputs(bundle, items[0])  # a modality the bundle lacks


def test_builds_are_deterministic_per_seed(tmp_path):
    first = read_manifest(build_bundle(tmp_path / "a", golden=False) / "manifest.json").files
    again = read_manifest(build_bundle(tmp_path / "b", golden=False) / "manifest.json").files
    other = read_manifest(build_bundle(tmp_path / "c", seed=1, golden=False) / "manifest.json").files
    text_only = build_bundle(tmp_path / "d", modalities=("text",), golden=False)
    assert first == again
    assert all(first[f] != other[f] for f in first if f.endswith(".onnx"))
    # one random stream per component: the text encoder does not depend on the other modalities
    assert read_manifest(text_only / "manifest.json").files["text_encoder.onnx"] == first["text_encoder.onnx"]


def test_build_is_fast(tmp_path):
    started = time.perf_counter()
    build_bundle(tmp_path)
    assert time.perf_counter() - started < 3.0


def test_sample_inputs_are_valid_media_varying_with_seed(bundle):
    tokenizer = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    durations, word_counts = set(), set()
    for seed in range(8):
        sample = sample_inputs(seed)
        assert sample == sample_inputs(seed)
        audio = soundfile.info(io.BytesIO(sample["audio"]))
        assert (audio.samplerate, audio.channels, audio.subtype, audio.format) == (16000, 1, "PCM_16", "WAV")
        assert 0.5 <= audio.duration <= 1.5
        assert sample["image"].startswith(b"\x89PNG")
        encoding = tokenizer.encode(sample["text"])
        assert (encoding.tokens[0], encoding.tokens[-1]) == ("[CLS]", "[SEP]")
        assert "[UNK]" not in encoding.tokens
        durations.add(audio.frames)
        word_counts.add(len(sample["text"].split()))
    assert len(durations) == 8 and len(word_counts) > 2
