"""Waveform encoders (wav2vec2, HuBERT, WavLM): the server's waveform front end equals the transformers
feature extractor's, and the backbone gives a clip what the transformers model gives it alone — also padded in a
batch, where transformers' own group-norm models change their answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from service.errors import InvalidInput
from service.preprocess.waveform import audio_features, budget_frames
from tests.integration.test_audio_encoders import WAVEFORM_FAMILIES, tiny_waveform_encoder
from training.encoders import audio_encoder_problem, audio_preprocess
from training.model.waveform import WaveformBackbone

LENGTHS = (4000, 5300, 2600)  # samples: three clips padded to the longest in one batch


def clips() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [0.3 * torch.randn(n, generator=generator) for n in LENGTHS]


def padded(waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """→ input_features [B,1,T], frame_mask [B,T]: what the server's collation sends."""
    samples, mask = torch.zeros(len(waves), 1, max(LENGTHS)), torch.zeros(len(waves), max(LENGTHS))
    for i, wave in enumerate(waves):
        samples[i, 0, : len(wave)], mask[i, : len(wave)] = wave, 1.0
    return samples, mask


@pytest.mark.parametrize("normalize", [True, False])
def test_the_waveform_front_end_is_the_feature_extractors(tmp_path, normalize):
    directory = tiny_waveform_encoder(tmp_path / "w2v", "wav2vec2-group", normalize=normalize)
    spec = audio_preprocess(str(directory))
    assert (spec.front_end, spec.normalize, spec.min_samples, spec.sample_rate) == ("waveform", normalize, 400, 16_000)
    extractor = transformers.Wav2Vec2FeatureExtractor.from_pretrained(directory)
    for wave in clips():
        expected = extractor(wave.numpy(), sampling_rate=16_000, return_tensors="np")["input_values"]  # [1,T]
        np.testing.assert_allclose(audio_features(wave.numpy(), spec, "audio"), expected, atol=1e-4)


def test_a_clip_shorter_than_the_receptive_field_is_refused_naming_the_limit(tmp_path):
    spec = audio_preprocess(str(tiny_waveform_encoder(tmp_path / "w2v", "hubert")))
    with pytest.raises(InvalidInput, match=r"inputs\[0\]\.audio is too short: under 25 ms"):
        audio_features(np.zeros(399, np.float32), spec, "inputs[0].audio")
    assert audio_features(np.zeros(400, np.float32), spec, "audio").shape == (1, 400)
    assert budget_frames(16_000, spec) == 100  # one second counts as 100 frames, as a log-mel second does


@pytest.mark.parametrize("family", list(WAVEFORM_FAMILIES))
def test_each_clip_gets_what_the_model_gives_it_alone_also_in_a_padded_batch(tmp_path, family):
    directory = tiny_waveform_encoder(tmp_path / family, family)
    backbone = WaveformBackbone(directory).eval()
    reference = transformers.AutoModel.from_pretrained(directory, attn_implementation="eager").eval()
    waves = clips()
    with torch.no_grad():
        alone = torch.cat([reference(w[None]).last_hidden_state.mean(1) for w in waves])  # [3,H]
        ours_alone = torch.cat([backbone(*padded([w])[:1], torch.ones(1, len(w))) for w in waves])
        ours_batched = backbone(*padded(waves))
    np.testing.assert_allclose(ours_alone.numpy(), alone.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours_batched.numpy(), alone.numpy(), atol=1e-5)


def test_transformers_group_norm_model_changes_a_padded_clips_answer(tmp_path):
    """Why the backbone runs the feature encoder itself: the upstream model normalises over the padding."""
    directory = tiny_waveform_encoder(tmp_path / "w2v", "wav2vec2-group")
    model = transformers.AutoModel.from_pretrained(directory, attn_implementation="eager").eval()
    wave = clips()[2]
    longer = torch.cat([wave, torch.zeros(max(LENGTHS) - len(wave))])
    with torch.no_grad():
        alone, in_batch = model(wave[None]).last_hidden_state, model(longer[None]).last_hidden_state
    assert float((alone[0, -3] - in_batch[0, -3]).abs().max()) > 1e-3


def test_the_finetune_blocks_are_the_encoders_layers(tmp_path):
    backbone = WaveformBackbone(tiny_waveform_encoder(tmp_path / "w2v", "wav2vec2-layer"))
    assert backbone.finetune_last(0).n_trainable() == 0
    one = backbone.finetune_last(1).n_trainable()
    assert 0 < one < backbone.finetune_last(2).n_trainable()
    assert all(p.requires_grad for p in backbone.model.encoder.layer_norm.parameters())  # stable: the final norm


def test_an_unknown_feature_extractor_is_refused(tmp_path):
    directory = tiny_waveform_encoder(tmp_path / "w2v", "wavlm")
    transformers.WhisperFeatureExtractor().save_pretrained(directory)
    assert "WhisperFeatureExtractor is not the Wav2Vec2FeatureExtractor of a wavlm model" in audio_encoder_problem(
        str(directory)
    )
