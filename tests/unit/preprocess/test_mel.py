"""Whisper log-mel front end: parity with transformers' WhisperFeatureExtractor, shape, speed.

transformers is a test-only reference here; service.preprocess itself never imports it.
"""

from __future__ import annotations

import numpy as np
import pytest

from service.manifest import AudioPreprocess
from service.preprocess import log_mel_spectrogram, mel_filters, num_frames

SPEC = AudioPreprocess()  # Whisper: 16 kHz, n_fft 400, hop 160, 80 mels, floor 8
TOLERANCE = 1e-4


def clip(n_samples: int, seed: int = 0) -> np.ndarray:
    """Speech-like test signal: two tones + noise, with a quiet stretch so the floor matters."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / SPEC.sample_rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * 3150 * t)
    wave += 0.02 * rng.standard_normal(n_samples)
    wave[: n_samples // 4] *= 1e-3
    return wave.astype(np.float32)


@pytest.fixture(scope="module")
def whisper():
    feature_extraction = pytest.importorskip("transformers.models.whisper.feature_extraction_whisper")
    return feature_extraction.WhisperFeatureExtractor(feature_size=80)


LENGTHS = [300, 1_234, 16_000, 48_037, 117_000, 30 * 16_000]  # 18.75 ms … the full 30 s window


@pytest.mark.parametrize("n_samples", LENGTHS)
def test_matches_transformers_numpy_reference(whisper, n_samples):
    """Against `_np_extract_fbank_features`: the extractor's own unpadded numpy path, called directly."""
    waveform = clip(n_samples)
    reference = whisper._np_extract_fbank_features(waveform[None], "cpu")[0]
    ours = log_mel_spectrogram(waveform, SPEC)
    assert ours.shape == reference.shape == (80, n_samples // 160)
    assert np.abs(ours - reference).max() < TOLERANCE


@pytest.mark.parametrize("n_samples", LENGTHS)
def test_matches_the_public_extractor_without_padding(whisper, n_samples):
    """Against `__call__(padding="do_not_pad")`: the public API, which uses torch.stft when torch exists."""
    waveform = clip(n_samples, seed=1)
    features = whisper(waveform, sampling_rate=16_000, padding="do_not_pad", return_tensors="np")
    reference = features["input_features"][0]
    ours = log_mel_spectrogram(waveform, SPEC)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() < TOLERANCE


def test_filterbank_matches_transformers():
    audio_utils = pytest.importorskip("transformers.audio_utils")
    for rate, n_fft, n_mels in [(16_000, 400, 80), (16_000, 400, 128), (8_000, 256, 40)]:
        reference = audio_utils.mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=rate / 2,
            sampling_rate=rate,
            norm="slaney",
            mel_scale="slaney",
        )
        np.testing.assert_allclose(mel_filters(rate, n_fft, n_mels), reference.T, rtol=1e-12, atol=1e-15)


def test_filterbank_is_cached_and_read_only():
    filters = mel_filters(16_000, 400, 80)
    assert mel_filters(16_000, 400, 80) is filters
    assert filters.shape == (80, 201) and not filters.flags.writeable


@pytest.mark.parametrize("n_samples", [160, 161, 319, 320, 16_000, 16_159])
def test_frame_count_is_samples_over_hop(n_samples):
    out = log_mel_spectrogram(np.zeros(n_samples, np.float32), SPEC)
    assert out.shape == (80, n_samples // 160) == (80, num_frames(n_samples, SPEC))
    assert out.dtype == np.float32 and out.flags.c_contiguous


def test_silence_and_dynamic_range_floor():
    assert np.all(log_mel_spectrogram(np.zeros(1600, np.float32), SPEC) == np.float32(-1.5))
    out = log_mel_spectrogram(clip(32_000), SPEC)
    assert out.max() - out.min() <= SPEC.log_floor_db / 4 + 1e-6  # floor at max - 8 (in log10 units) / 4


def test_other_parameters_follow_the_spec():
    spec = AudioPreprocess(sample_rate=8_000, n_mels=40, n_fft=256, hop_length=80, log_floor_db=6.0)
    out = log_mel_spectrogram(clip(8_000), spec)
    assert out.shape == (40, 100)
    assert out.max() - out.min() <= 6.0 / 4 + 1e-6


def test_rejects_multichannel_and_too_short_input():
    with pytest.raises(ValueError, match="1-D"):
        log_mel_spectrogram(np.zeros((2, 1600), np.float32), SPEC)
    with pytest.raises(ValueError, match="shorter than one hop"):
        log_mel_spectrogram(np.zeros(100, np.float32), SPEC)
