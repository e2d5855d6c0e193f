"""Load one bundle version: validate, verify files, open sessions, prove parity, warm up.

Any failure raises BundleError with the reason; the registry records it and keeps serving whatever
version already works (docs/bad-input.md rows 16–17).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import posixpath
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service import preprocess
from service.bundle_files import read_valid_manifest, verify_files
from service.engine.components import EncoderComponent, FusionComponent
from service.engine.onnx_files import external_data_files
from service.engine.runtime import OrtModel
from service.errors import BundleError, FusionError
from service.items import PreparedItem, RawItem
from service.manifest import Manifest, TensorSpec, manifest_digest
from service.modalities.registry import modality as modality_spec
from service.preprocess.prepare import prepare_item
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class LoadedBundle:
    manifest: Manifest
    directory: Path
    encoders: dict[str, EncoderComponent]
    fusion: FusionComponent | None  # None once retired (without_sessions)
    tokenizer: object | None
    provider: str
    # of the manifest as read (a front-end's follower compares it: service/frontend/remote/follower.py)
    manifest_sha256: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.manifest_sha256 = manifest_digest(self.manifest)

    def without_sessions(self) -> LoadedBundle:
        """What a request still holding a retired version may read (manifest, tokenizer), sessions let go."""
        return dataclasses.replace(self, encoders={}, fusion=None)


def verify_external_data(manifest: Manifest, directory: Path) -> None:
    """Every file a graph keeps tensors in (ONNX external data) must be listed in `files`, so it was verified
    like the graph itself: onnxruntime would read an unlisted one unchecked."""
    for graph in manifest.graph_files():
        try:
            locations = external_data_files(directory / graph)
        except ValueError as error:
            raise BundleError(str(error)) from None
        for location in sorted(locations):
            relative = posixpath.normpath(posixpath.join(posixpath.dirname(graph), location.replace("\\", "/")))
            if relative not in manifest.files:
                raise BundleError(
                    f"{graph} keeps tensors in {location!r}, which manifest.json's files does not list with its "
                    "sha256 (every file onnxruntime reads must be listed)"
                )


def _check_io(
    model: OrtModel, inputs: list[TensorSpec], outputs: list[TensorSpec], what: str, by_name: bool = False
) -> None:
    """Encoders are read by position (the embedding comes first), fusion by output name."""
    declared_in, declared_out = [t.name for t in inputs], [t.name for t in outputs]
    if sorted(model.input_names) != sorted(declared_in):
        raise BundleError(f"{what}: ONNX inputs {model.input_names} != manifest {declared_in}")
    if by_name:
        matches = set(declared_out) <= set(model.output_names)
    else:
        matches = model.output_names[: len(declared_out)] == declared_out
    if not matches:
        raise BundleError(f"{what}: ONNX outputs {model.output_names} != manifest {declared_out}")


def open_components(manifest: Manifest, directory: Path, settings: Settings):
    encoders = {}
    for modality in manifest.modalities():
        spec = getattr(manifest.encoders, modality)
        model = OrtModel(directory / spec.file, settings)
        _check_io(model, spec.inputs, spec.outputs, spec.file)
        multiple = modality_spec(modality).pad_multiple(spec.preprocess)
        encoders[modality] = EncoderComponent(modality, model, spec, multiple)
    fusion_model = OrtModel(directory / manifest.fusion.file, settings)
    _check_io(fusion_model, manifest.fusion.inputs, manifest.fusion.outputs, manifest.fusion.file, by_name=True)
    fusion = FusionComponent(fusion_model, manifest.fusion, manifest.embedding_dim)
    return encoders, fusion


def load_bundle(directory: Path, settings: Settings) -> LoadedBundle:
    manifest = read_valid_manifest(directory)
    verify_files(manifest, directory)
    verify_external_data(manifest, directory)
    try:
        encoders, fusion = open_components(manifest, directory, settings)
    except BundleError:
        raise
    except Exception as error:  # onnxruntime rejects the graph
        raise BundleError(f"onnxruntime cannot load the bundle: {error}") from None
    tokenizer = None
    if manifest.encoders.text is not None:
        spec = manifest.encoders.text.preprocess
        tokenizer = preprocess.load_tokenizer(directory / spec.tokenizer_file, spec)
    return LoadedBundle(manifest, directory, encoders, fusion, tokenizer, fusion.model.provider)


def golden_items(bundle: LoadedBundle, settings: Settings) -> list[PreparedItem]:
    items = []
    for index, example in enumerate(bundle.manifest.golden):
        raw = RawItem(
            image=base64.b64decode(example.inputs.image_b64) if example.inputs.image_b64 else None,
            audio=base64.b64decode(example.inputs.audio_b64) if example.inputs.audio_b64 else None,
            text=example.inputs.text,
            video=base64.b64decode(example.inputs.video_b64) if example.inputs.video_b64 else None,
            prefix=f"golden[{index}].",
        )
        try:
            items.append(prepare_item(raw, bundle.manifest, bundle.tokenizer, settings))
        except FusionError as error:
            raise BundleError(f"golden example {index} cannot be preprocessed: {error.message}") from None
    return items


def max_golden_error(bundle: LoadedBundle, results) -> float:
    """Largest |server − reference| over probabilities, fused, per-slot embeddings and probabilities, and a
    video's segments (bounds, probabilities, fused); infinite when the segments differ in number."""
    worst = 0.0
    for example, result in zip(bundle.manifest.golden, results, strict=True):
        expected = example.outputs
        pairs = [(expected.probabilities, result.probabilities), (expected.fused, result.fused)]
        pairs += [(vector, result.embeddings[m]) for m, vector in expected.embeddings.items()]
        pairs += [(vector, result.modality_probabilities[m]) for m, vector in expected.modality_probabilities.items()]
        segments = result.segments
        if len(expected.segments) != (len(segments) if segments is not None else 0):
            return float("inf")
        for row, segment in enumerate(expected.segments):
            pairs += [([segment.start_s, segment.end_s], segments.bounds[row])]
            pairs += [(segment.probabilities, segments.probabilities[row]), (segment.fused, segments.fused[row])]
        for reference, actual in pairs:
            worst = max(worst, float(np.max(np.abs(np.asarray(reference, np.float32) - actual))))
    return worst
