"""Whisper's log-mel front end in numpy (no torch), shared by the server and the trainer.

Matches `transformers.WhisperFeatureExtractor._np_extract_fbank_features` (itself a port of
openai/whisper's `log_mel_spectrogram`): periodic Hann STFT, centre + reflect padding, power
spectrum, last frame dropped, Slaney mel filterbank, log10, dynamic-range floor, (x + 4) / 4.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from service.manifest import AudioPreprocess

# Power below this is clamped before log10 (Whisper's value): silence maps to -10, not -inf.
_POWER_FLOOR = 1e-10
# Frames per STFT block: keeps each temporary (~1.6 MB at n_fft 400) in cache, which is faster than one 30 s
# block (docs/design-choices.md, "Log-mel in blocks"), and a request's peak memory stays small when many are
# decoded at once.
_BLOCK_FRAMES = 256


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False)."""
    freq = np.asarray(freq, dtype=np.float64)
    linear = 3.0 * freq / 200.0
    log = 15.0 + np.log(np.maximum(freq, 1e-12) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(freq >= 1000.0, log, linear)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    linear = 200.0 * mels / 3.0
    log = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels - 15.0))
    return np.where(mels >= 15.0, log, linear)


@lru_cache(maxsize=16)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-normalised triangular filters, float64 [n_mels, n_fft // 2 + 1], fmin 0, fmax sr/2."""
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    mel_max = _hz_to_mel(np.array(sample_rate / 2))
    edges = _mel_to_hz(np.linspace(0.0, mel_max, n_mels + 2))  # n_mels centres plus both ends
    slopes = edges[None, :] - fft_freqs[:, None]  # [bins, n_mels + 2]
    widths = np.diff(edges)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    # Slaney norm: each triangle has unit area in Hz, so channels carry comparable energy.
    filters *= 2.0 / (edges[2:] - edges[:-2])
    filters = np.ascontiguousarray(filters.T)
    filters.setflags(write=False)  # cached and shared: nobody may mutate it
    return filters


@lru_cache(maxsize=16)
def hann_window(n_fft: int) -> np.ndarray:
    """Periodic Hann window (torch.hann_window's default), as Whisper uses."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)
    window.setflags(write=False)
    return window


def num_frames(n_samples: int, spec: AudioPreprocess) -> int:
    """Frames for `n_samples` samples: the centred STFT's count minus the last frame Whisper drops."""
    pad = spec.n_fft // 2
    return max(0, (n_samples + 2 * pad - spec.n_fft) // spec.hop_length)


def log_mel_spectrogram(waveform: np.ndarray, spec: AudioPreprocess) -> np.ndarray:
    """Mono float waveform (±1 full scale) at spec.sample_rate → float32 [n_mels, T], T = n_samples // hop.

    The floor is relative to the clip's own maximum, so a clip's features never depend on what it is
    batched with; padding to a batch (or to spec.frames_multiple) is the batcher's job.
    """
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise ValueError(f"waveform must be 1-D (mono), got shape {waveform.shape}")
    frames_out = num_frames(waveform.shape[0], spec)
    if frames_out == 0:
        raise ValueError(f"waveform of {waveform.shape[0]} samples is shorter than one hop")
    # float64 like the reference: float32 FFT noise reaches ~1e-4 in quiet bins next to loud ones.
    padded = np.pad(waveform.astype(np.float64, copy=False), spec.n_fft // 2, mode="reflect")
    frames = sliding_window_view(padded, spec.n_fft)[:: spec.hop_length][:frames_out]  # a view
    window = hann_window(spec.n_fft)
    power = np.empty((frames_out, spec.n_fft // 2 + 1), dtype=np.float64)
    for start in range(0, frames_out, _BLOCK_FRAMES):
        spectrum = np.fft.rfft(frames[start : start + _BLOCK_FRAMES] * window, axis=-1)
        np.add(spectrum.real**2, spectrum.imag**2, out=power[start : start + _BLOCK_FRAMES])
    # One matmul for the whole clip: a BLAS call per block costs a thread hand-off each time.
    mel = mel_filters(spec.sample_rate, spec.n_fft, spec.n_mels) @ power.T  # [n_mels, T]
    log_spec = np.log10(np.maximum(mel, _POWER_FLOOR, out=mel), out=mel)
    log_spec = np.maximum(log_spec, log_spec.max() - spec.log_floor_db, out=log_spec)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)
