"""Decoded videos made up directly (VideoArrays, shaped by a test bundle's specs), so the engine's video path is
tested apart from decoding: segments of different frame counts, segments without sound, without picture; and
the check that a served video answers as the numpy reference (tests/bundle_reference.py) does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.engine.bundle import LoadedBundle, load_bundle
from service.items import ItemResult, PreparedItem, VideoArrays
from service.manifest import MODALITIES
from service.settings import Settings
from tests.bundles import build_bundle

ATOL = 1e-5  # float32 ONNX against the float64 reference


def video_bundle(root: Path, modalities=MODALITIES, **options) -> LoadedBundle:
    """A test bundle with video (no golden examples: those need decoding), loaded as the server loads it."""
    return load_bundle(build_bundle(root, "vid", "1", modalities=modalities, golden=False, **options), Settings())


def video_arrays(
    bundle: LoadedBundle, seed: int = 0, frames: tuple[int, ...] = (2, 2, 1), sound: tuple[bool, ...] | None = None
) -> VideoArrays:
    """One segment per entry of `frames` (that many frames in it; 0: none) with sound where `sound` says
    (default: every segment), its mel of a length drawn per segment. The bundle's specs give the shapes."""
    rng = np.random.default_rng(seed)
    encoders, count = bundle.manifest.encoders, len(frames)
    sound = (True,) * count if sound is None else sound
    side = encoders.image.preprocess.size if encoders.image else 1
    pixels = rng.normal(0, 1.0, (sum(frames), 3, side, side)) + rng.normal(0, 1.0, (sum(frames), 3, 1, 1))
    segment = np.repeat(np.arange(count), frames).astype(np.int32)  # [N]
    bounds = np.array([[row, row + 1.0] for row in range(count)], np.float32)  # [G,2]
    mels = encoders.audio.preprocess.n_mels if encoders.audio else 1
    lengths = np.array([int(rng.integers(20, 90)) if has else 0 for has in sound], np.int32)  # [G]
    audio = np.zeros((count, mels, max(int(lengths.max()), 1)), np.float32)  # [G,C,T] zero-padded
    for row, length in enumerate(lengths):
        audio[row, :, :length] = rng.normal(-0.5, 0.5, (mels, length))
    return VideoArrays(pixels.astype(np.float32), segment, bounds, audio, lengths)


def video_item(bundle: LoadedBundle, seed: int = 0, others: dict | None = None, **shape) -> PreparedItem:
    return PreparedItem({**(others or {}), "video": video_arrays(bundle, seed, **shape)})


def assert_reference(result: ItemResult, expected: dict, atol: float = ATOL) -> None:
    """The clip's answer and every segment's equal the reference's."""
    np.testing.assert_allclose(result.probabilities, expected["probabilities"], atol=atol, rtol=0)
    np.testing.assert_allclose(result.fused, expected["fused"], atol=atol, rtol=0)
    assert sorted(result.embeddings) == sorted(expected["embeddings"])
    for slot, vector in expected["embeddings"].items():
        np.testing.assert_allclose(result.embeddings[slot], vector, atol=atol, rtol=0)
    assert sorted(result.modality_probabilities) == sorted(expected["modality_probabilities"])
    for slot, vector in expected["modality_probabilities"].items():
        np.testing.assert_allclose(result.modality_probabilities[slot], vector, atol=atol, rtol=0)
    segments = result.segments
    assert segments is not None and len(segments) == len(expected["segments"])
    for row, segment in enumerate(expected["segments"]):
        assert segments.slots(row) == segment["slots"]
        np.testing.assert_allclose(segments.bounds[row], [segment["start_s"], segment["end_s"]], atol=0, rtol=0)
        np.testing.assert_allclose(segments.probabilities[row], segment["probabilities"], atol=atol, rtol=0)
        np.testing.assert_allclose(segments.fused[row], segment["fused"], atol=atol, rtol=0)
        for slot, vector in segment["embeddings"].items():
            np.testing.assert_allclose(segments.embeddings[slot][row], vector, atol=atol, rtol=0)
        for slot, vector in segment["modality_probabilities"].items():
            np.testing.assert_allclose(segments.modality_probabilities[slot][row], vector, atol=atol, rtol=0)
