"""Bring your own audio encoder: a Hugging Face Whisper directory of any size named by
`--audio-encoder` — here a tiny random-initialised one built offline from a WhisperConfig, saved with its
feature extractor — is trained on tones, exported, and answered over HTTP equal to torch within 1e-4 at any
clip length; the server's log-mel equals the transformers feature extractor's. The same for waveform encoders
(wav2vec2, HuBERT, WavLM), read from the raw samples with their attention mask."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import transformers

from service.manifest import AudioPreprocess
from service.preprocess.mel import log_mel_spectrogram
from tests.integration.labelled_media import assert_served_like_torch, write_media_dataset
from tests.integration.test_text_encoders import cli
from training.encoders import audio_preprocess

pytestmark = pytest.mark.slow
TONES = {"low": 220.0, "mid": 660.0, "high": 1760.0}


def tone(frequency: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    seconds = float(rng.uniform(0.4, 1.2))
    t = np.arange(int(seconds * 16_000)) / 16_000
    wave = 0.3 * np.sin(2 * np.pi * frequency * t) + rng.normal(0, 0.01, t.shape)
    buffer = io.BytesIO()
    soundfile.write(buffer, wave, 16_000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def tiny_whisper(directory: Path, n_mels: int = 80) -> Path:
    config = transformers.WhisperConfig(vocab_size=64, num_mel_bins=n_mels, d_model=32, encoder_layers=2,
                                        encoder_attention_heads=2, encoder_ffn_dim=64, decoder_layers=1,
                                        decoder_attention_heads=2, decoder_ffn_dim=64, max_source_positions=1500,
                                        max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                        decoder_start_token_id=1, suppress_tokens=[],
                                        begin_suppress_tokens=[])  # fmt: skip
    torch.manual_seed(0)
    transformers.WhisperModel(config).save_pretrained(directory)
    transformers.WhisperFeatureExtractor(feature_size=n_mels).save_pretrained(directory)
    return directory


def write_tones(root: Path) -> Path:
    return write_media_dataset(root, "audio", TONES, tone, ".wav")


@pytest.mark.parametrize("n_mels", [80, 128])  # tiny … medium, and large-v3's 128 mel bins
def test_the_servers_log_mel_is_the_feature_extractors(tmp_path, n_mels):
    extractor = transformers.WhisperFeatureExtractor(feature_size=n_mels)
    extractor.save_pretrained(tmp_path)
    spec = audio_preprocess(str(tmp_path))
    assert isinstance(spec, AudioPreprocess) and spec.n_mels == n_mels
    rng = np.random.default_rng(n_mels)
    wave = (0.3 * np.sin(np.arange(30 * 16_000) * 0.05) + rng.normal(0, 0.05, 30 * 16_000)).astype(np.float32)
    expected = extractor(wave, sampling_rate=16_000, return_tensors="np")["input_features"][0]  # [n_mels, 3000]
    np.testing.assert_allclose(log_mel_spectrogram(wave, spec), expected, atol=1e-4)


# Tiny waveform encoders: both feature-encoder variants ("group": every base model, normalised over the clip;
# "layer": the large ones, per frame), both encoder orders, WavLM's relative position bias
WAVEFORM_FAMILIES = {
    "wav2vec2-group": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model, {"feat_extract_norm": "group"}),
    "wav2vec2-layer": (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model,
                       {"feat_extract_norm": "layer", "do_stable_layer_norm": True}),
    "hubert": (transformers.HubertConfig, transformers.HubertModel, {}),
    "wavlm": (transformers.WavLMConfig, transformers.WavLMModel, {"num_buckets": 32, "max_bucket_distance": 100}),
}  # fmt: skip


def tiny_waveform_encoder(directory: Path, family: str, normalize: bool = True) -> Path:
    config_class, model_class, variant = WAVEFORM_FAMILIES[family]
    config = config_class(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          conv_dim=(16,) * 7,  # the real kernels and strides: 20 ms frames, 25 ms receptive field
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, **variant)  # fmt: skip
    torch.manual_seed(0)
    model_class(config).save_pretrained(directory)
    transformers.Wav2Vec2FeatureExtractor(do_normalize=normalize).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("family", ["whisper", *WAVEFORM_FAMILIES])
async def test_an_audio_encoder_trains_exports_and_serves_as_torch(tmp_path, monkeypatch, family):
    monkeypatch.chdir(tmp_path)
    build = tiny_whisper if family == "whisper" else lambda directory: tiny_waveform_encoder(directory, family)
    encoder = build(tmp_path / family)
    given = ("--data", str(write_tones(tmp_path / "tones")), "--name", "tones", "--audio-encoder", str(encoder))
    assert cli("train", *given) == 0
    assert cli("evaluate", *given, "--compare-fusions", "false") == 0
    assert cli("export", *given) == 0
    clips = [tone(220.0, 901), tone(1760.0, 902), tone(660.0, 903)]  # three lengths, padded in one batch
    await assert_served_like_torch(tmp_path, "tones", "audio", clips)


def test_a_waveform_encoder_with_an_adapter_is_refused_with_the_reason(tmp_path, capsys):
    encoder = tiny_waveform_encoder(tmp_path / "w2v", "wav2vec2-group")
    config = json.loads((encoder / "config.json").read_text())
    (encoder / "config.json").write_text(json.dumps(config | {"add_adapter": True}))
    code = cli("train", "--data", str(write_tones(tmp_path / "tones")), "--audio-encoder", str(encoder),
               "--out-dir", str(tmp_path / "run"))  # fmt: skip
    assert code == 2 and "add_adapter" in capsys.readouterr().err
