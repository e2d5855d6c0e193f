"""The modality registry (service/modalities): every registered modality has every piece, in manifest order, and
the protocol tables are built from it."""

from __future__ import annotations

import typing

import numpy as np
import pytest

from service import manifest as schema
from service.frontend.api import inputs, openai_inputs, schemas
from service.frontend.api.v2 import rest_codec
from service.items import RawItem, VideoArrays
from service.manifest import Encoders, read_manifest
from service.modalities import registry
from service.modalities.spec import ModalitySpec
from service.preprocess.text import load_tokenizer
from service.settings import Settings
from tests import media
from tests.bundles import build_bundle, sample_video

SAMPLES = {"image": media.png(), "text": "a small red square", "audio": media.audio(1.0), "video": sample_video()}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The tiny bundle's manifest and tokenizer: what decode and warm-up take (no sessions needed)."""
    directory = build_bundle(tmp_path_factory.mktemp("models"), modalities=schema.MODALITIES, golden=False)
    manifest = read_manifest(directory / "manifest.json")
    return manifest, load_tokenizer(directory / manifest.encoders.text.preprocess.tokenizer_file,
                                    manifest.encoders.text.preprocess)  # fmt: skip


def test_the_registry_is_in_manifest_order():
    """The manifest's encoders are the registry's modalities, in its order (the registry checks the names
    against MODALITIES itself at import; the manifest's Encoders model is written separately)."""
    assert tuple(Encoders.model_fields) == schema.MODALITIES
    assert [spec.name for spec in registry.specs()] == list(schema.MODALITIES)


def test_a_registry_must_name_exactly_the_manifests_modalities():
    with pytest.raises(RuntimeError, match="registered modalities"):
        registry.ordered(registry.REGISTERED[:2], schema.MODALITIES)
    with pytest.raises(KeyError, match="unknown modality 'depth'"):
        registry.modality("depth")
    assert registry.get("fusion") is None


@pytest.mark.parametrize("name", schema.MODALITIES)
def test_every_modality_has_every_piece(name, bundle):
    spec, (manifest, tokenizer) = registry.modality(name), bundle
    assert isinstance(spec, ModalitySpec) and spec.name == name
    assert spec.parts.v1 == name and spec.parts.v2 and spec.parts.openai in openai_inputs.SCHEMAS
    # the manifest's entry for this modality: its encoder class, and that encoder's preprocessing spec
    assert spec.encoder_class in typing.get_args(Encoders.model_fields[name].annotation)
    assert spec.encoder_class.model_fields["preprocess"].annotation is spec.preprocess_class
    assert spec.limit_setting in Settings.model_fields
    assert spec.budget_setting is None or spec.budget_setting in Settings.model_fields
    preprocess, settings = manifest.encoder(name).preprocess, Settings()
    assert isinstance(preprocess, spec.preprocess_class)
    if spec.encoded_file:
        assert spec.sniff(SAMPLES[name]) in spec.accepted_formats and spec.sniff(b"nothing known") is None
    inputs = spec.preprocess_of(manifest, RawItem(), None)  # what decode takes: the spec, or built from it (video)
    decoded = spec.decode(SAMPLES[name], inputs, settings, name, tokenizer)
    warm = spec.warmup_input(inputs, spec.longest_length(preprocess, settings), tokenizer)
    assert type(decoded) is type(warm)
    if isinstance(decoded, VideoArrays):  # a video's component pools frame embeddings: test_video_spec.py
        decoded, warm = (np.ones((count, manifest.embedding_dim), np.float32) for count in (2, 5))  # [K,D]
    batch = spec.collate([decoded, warm], spec.pad_multiple(preprocess))
    assert len(batch) == len(manifest.encoder(name).inputs) and all(len(array) == 2 for array in batch)
    assert 1 <= spec.item_length(decoded, preprocess) <= spec.item_length(warm, preprocess)
    assert spec.limit(preprocess, settings.model_copy(update={spec.limit_setting: 7})) <= 7  # the setting bounds it


def test_the_protocol_tables_come_from_the_registry():
    names = list(schema.MODALITIES)
    assert list(inputs.InputItem.model_fields) == names
    assert list(schemas.MULTIPART_SCHEMA["properties"]) == names
    assert list(schemas.JSON_SCHEMA["properties"]["inputs"]["items"]["properties"]) == names
    assert sorted(modality for _, modality in openai_inputs.PART_TYPES.values()) == sorted(names)
    assert set(rest_codec.MEDIA_INPUTS) == {"image", "audio", "video"}  # the V2 inputs that carry encoded files
    # declared, not built: a response model, one field per fusion slot, which a new modality must add
    assert set(schema.SLOTS) <= set(schemas.EmbedResult.model_fields)


def test_registered_budgets_are_the_settings():
    settings = Settings(text_token_budget=123, audio_frame_budget=456)
    assert {spec.name: spec.budget(settings) for spec in registry.specs()} == {
        "image": None, "text": 123, "audio": 456, "video": None,
    }  # fmt: skip


@pytest.mark.parametrize("name", ("image", "text", "audio"))  # a video's pool items: test_video_spec.py
def test_collate_by_name_is_the_specs(name, bundle):
    """service.preprocess.batch.collate, the trainer's entry, batches by modality name and refuses an unknown one."""
    from service.preprocess.batch import collate

    manifest, tokenizer = bundle
    preprocess = manifest.encoder(name).preprocess
    items = [registry.modality(name).warmup_input(preprocess, None, tokenizer)] * 2
    (first, *_) = collate(name, items)
    assert first.shape[0] == 2  # a batch of the two warm-up inputs
    with pytest.raises(ValueError, match="unknown modality"):
        collate("depth", items)
