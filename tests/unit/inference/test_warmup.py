"""Warm-up pays each encoder's largest batch at load (service/engine/warmup.py): the longest inputs the
limits accept, as many as the batch size and the padding budget admit."""

from __future__ import annotations

import pytest

from service.engine.bundle import load_bundle
from service.engine.warmup import largest_batches, warmup_batches
from service.preprocess.audio import decode_audio
from service.preprocess.text import encode_text
from service.settings import Settings
from tests import media
from tests.bundles import build_bundle

SETTINGS = dict(max_batch_size=12, component_max_batch_size={"image": 5}, text_token_budget=100)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return load_bundle(build_bundle(root, text_max_length=16, audio_max_seconds=10.0), Settings(**SETTINGS))


def by_modality(batches) -> dict[str, list]:
    return {batch[0].modalities[0]: batch for batch in batches}


@pytest.mark.parametrize(("audio_budget", "audio_batch"), [(500, 1), (2_500, 2), (50_000, 12)])
def test_largest_batch_is_the_batchers_largest(bundle, audio_budget, audio_batch):
    settings = Settings(**SETTINGS, audio_frame_budget=audio_budget)
    batches = by_modality(largest_batches(bundle, settings))
    assert set(batches) == {"image", "text", "audio"}
    assert len(batches["image"]) == 5  # the image component's own batch size
    # text: max_length tokens (what a very long text is cut to), as many as 100 tokens admit
    longest_text = encode_text("word " * 500, bundle.tokenizer, bundle.manifest.encoders.text.preprocess)
    assert {len(item.arrays["text"][0]) for item in batches["text"]} == {len(longest_text[0])} == {16}
    assert len(batches["text"]) == 6  # 6 x 16 <= 100 tokens < 7 x 16
    # audio: the frames of the longest clip decode_audio accepts (10 s, the bundle's limit)
    spec = bundle.manifest.encoders.audio.preprocess
    frames = decode_audio(media.audio(10.0), spec, max_seconds=30.0).shape[-1]  # mel [n_mels, T]
    assert {item.arrays["audio"].shape[-1] for item in batches["audio"]} == {frames}
    # 1000 frames (100 per second): one even over the budget, as many as it admits, at most 12
    assert frames == 1000 and len(batches["audio"]) == audio_batch


def test_server_audio_limit_shortens_the_longest_clip(bundle):
    settings = Settings(**SETTINGS, max_audio_seconds=2.0, audio_frame_budget=1_000)
    audio = by_modality(largest_batches(bundle, settings))["audio"]
    spec = bundle.manifest.encoders.audio.preprocess
    frames = decode_audio(media.audio(2.0), spec, max_seconds=2.0).shape[-1]  # mel [n_mels, T]
    assert audio[0].arrays["audio"].shape[-1] == frames
    assert len(audio) == 1_000 // frames


def test_warmup_batches_follow_the_settings(bundle):
    plain = Settings(**SETTINGS, warmup_batch_sizes=[1, 3], warmup_largest_batch=False)
    assert [len(batch) for batch in warmup_batches(bundle, plain)] == [1, 3]
    assert all(item.modalities == ["image", "text", "audio"] for b in warmup_batches(bundle, plain) for item in b)
    full = Settings(**SETTINGS, warmup_batch_sizes=[1, 3])
    assert [len(batch) for batch in warmup_batches(bundle, full)][:2] == [1, 3]
    assert len(warmup_batches(bundle, full)) == 5  # + image, text and audio at their largest
