"""The audio front ends after decoding: Whisper's log-mel, or the raw waveform that wav2vec2, HuBERT and WavLM
read (docs/bundle-format.md, "manifest.json": `front_end`), and the length each counts against the audio padding budget.

Both give the encoder one float32 array with time last — log-mel [n_mels, frames], waveform [1, samples] — so
batch collation pads the same way for both (service.preprocess.batch).
"""

from __future__ import annotations

import numpy as np

from service.errors import InvalidInput
from service.manifest import AudioPreprocess
from service.preprocess.mel import log_mel_spectrogram, num_frames

# Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm's epsilon: a silent clip stays zeros, not NaN
_VARIANCE_EPSILON = 1e-7


def audio_features(waveform: np.ndarray, spec: AudioPreprocess, field: str) -> np.ndarray:
    """Mono float32 samples at spec.sample_rate → the encoder's input: [n_mels, T] or [1, T]."""
    if spec.front_end == "waveform":
        if waveform.shape[0] < spec.min_samples:
            shortest_ms = spec.min_samples / spec.sample_rate * 1000
            raise InvalidInput(f"{field} is too short: under {shortest_ms:g} ms, the encoder's shortest input", field)
        return (normalized(waveform) if spec.normalize else waveform.astype(np.float32, copy=False))[None]
    if num_frames(waveform.shape[0], spec) == 0:
        hop_ms = spec.hop_length / spec.sample_rate * 1000
        raise InvalidInput(f"{field} is too short: under one {hop_ms:g} ms frame", field)
    return log_mel_spectrogram(waveform, spec)


def normalized(waveform: np.ndarray) -> np.ndarray:
    """(x - mean) / sqrt(var + 1e-7) over the clip: what the feature extractor does before padding."""
    x = waveform.astype(np.float64)
    return ((x - x.mean()) / np.sqrt(x.var() + _VARIANCE_EPSILON)).astype(np.float32)


def budget_frames(length: int, spec: AudioPreprocess) -> int:
    """What an input of `length` (its last axis) counts against the audio padding budget: mel frames, or for a
    waveform its length in hop_length-sample frames (10 ms at 16 kHz, as a mel frame)."""
    return -(-length // spec.hop_length) if spec.front_end == "waveform" else length


def input_length(seconds: float, spec: AudioPreprocess) -> int:
    """The last axis of the input a clip of `seconds` gives: mel frames, or samples."""
    samples = int(seconds * spec.sample_rate)
    return samples if spec.front_end == "waveform" else num_frames(samples, spec)


def silence(length: int, spec: AudioPreprocess) -> np.ndarray:
    """An input of `length` on the last axis (warm-up): [n_mels, length] or [1, length] zeros."""
    return np.zeros((1 if spec.front_end == "waveform" else spec.n_mels, length), np.float32)
