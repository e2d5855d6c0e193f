"""Audio decoding (docs/bad-input.md rows 7–8): sniffing, declared-length checks, truncation, formats."""

from __future__ import annotations

import io
import struct
import time

import numpy as np
import pytest
import soundfile as sf

from service.errors import FusionError, InvalidInput, PayloadTooLarge
from service.manifest import AudioPreprocess
from service.preprocess import decode_audio, log_mel_spectrogram

SPEC = AudioPreprocess()  # 16 kHz, 80 mels, hop 160, 30 s
FRAMES_PER_SECOND = SPEC.sample_rate // SPEC.hop_length


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1, noise: float = 0.01) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + noise * np.random.default_rng(0).standard_normal(t.size)
    return np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else wave


def encode(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def wav_claiming(seconds: float, rate: int = 16_000, present: int = 3200) -> bytes:
    """A 16-bit mono WAV header whose data chunk declares `seconds`, followed by `present` bytes."""
    declared = int(seconds * rate) * 2
    header = b"RIFF" + struct.pack("<I", 36 + declared) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return header + b"data" + struct.pack("<I", declared) + bytes(present)


def flac_claiming(seconds: float) -> bytes:
    """A real 1 s FLAC whose STREAMINFO total-samples field is rewritten to claim `seconds`."""
    data = bytearray(encode(tone(1.0, 16_000, noise=0.0), 16_000, "FLAC"))
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # first metadata block is STREAMINFO
    (packed,) = struct.unpack(">Q", data[18:26])  # sr:20 | channels-1:3 | bps-1:5 | total samples:36
    packed = (packed & ~((1 << 36) - 1)) | int(seconds * 16_000)
    data[18:26] = struct.pack(">Q", packed)
    return bytes(data)


def assert_error(info, status: int, field: str = "audio") -> None:
    assert (info.value.status, info.value.field) == (status, field)


# --- accepted: downmixed, resampled, right shape --------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "channels", "fmt", "subtype"),
    [
        (16_000, 1, "WAV", "PCM_16"),
        (16_000, 1, "WAV", "PCM_32"),
        (16_000, 1, "WAV", "PCM_U8"),
        (16_000, 1, "WAV", "FLOAT"),
        (16_000, 1, "WAV", "DOUBLE"),
        (8_000, 1, "WAV", "PCM_16"),
        (48_000, 2, "WAV", "PCM_24"),
        (44_100, 2, "WAV", "FLOAT"),
        (22_050, 6, "WAV", "PCM_16"),
        (16_000, 2, "FLAC", "PCM_16"),
        (48_000, 1, "FLAC", "PCM_24"),
        (16_000, 1, "OGG", "VORBIS"),
        (44_100, 2, "OGG", "VORBIS"),
        (48_000, 1, "OGG", "OPUS"),
    ],
)
def test_accepted_formats_give_whisper_features(rate, channels, fmt, subtype):
    seconds = 1.5
    out = decode_audio(encode(tone(seconds, rate, channels=channels), rate, fmt, subtype), SPEC, max_seconds=30)
    assert out.dtype == np.float32 and out.flags.c_contiguous and np.isfinite(out).all()
    assert out.shape == (SPEC.n_mels, round(seconds * FRAMES_PER_SECOND))  # T = duration * sr / hop


def test_mono_pipeline_is_exactly_log_mel_of_the_samples():
    samples = tone(2.0, 16_000).astype(np.float32)
    out = decode_audio(encode(samples, 16_000, subtype="FLOAT"), SPEC, max_seconds=30)
    np.testing.assert_array_equal(out, log_mel_spectrogram(samples, SPEC))


def test_stereo_is_downmixed_by_mean():
    mono = tone(1.0, 16_000).astype(np.float32)
    same = decode_audio(encode(np.stack([mono, mono], 1), 16_000, subtype="FLOAT"), SPEC, max_seconds=30)
    np.testing.assert_allclose(same, log_mel_spectrogram(mono, SPEC), atol=1e-6)
    cancelled = decode_audio(encode(np.stack([mono, -mono], 1), 16_000, subtype="FLOAT"), SPEC, max_seconds=30)
    assert np.all(cancelled == np.float32(-1.5))  # silence: log10(1e-10) = -10 → (-10 + 4) / 4


@pytest.mark.parametrize("rate", [8_000, 44_100, 48_000])
def test_resampling_preserves_the_spectrum(rate):
    def features(sr: int) -> np.ndarray:
        data = encode(tone(2.0, sr, 1000.0, noise=0.0), sr, subtype="FLOAT")
        return decode_audio(data, SPEC, max_seconds=30)[:, 5:-5]  # skip the resampler's edge transients

    reference, out = features(16_000), features(rate)
    assert np.array_equal(out.argmax(axis=0), reference.argmax(axis=0))
    loud = reference > reference.max() - 0.5  # the tone's bins (within 20 dB of the peak)
    assert loud.any(axis=0).all()
    np.testing.assert_allclose(out[loud], reference[loud], atol=0.02)


def test_long_multichannel_file_decodes_across_blocks():
    out = decode_audio(encode(tone(5.0, 48_000, channels=2), 48_000), SPEC, max_seconds=30)
    assert out.shape == (SPEC.n_mels, 5 * FRAMES_PER_SECOND)


def test_streaming_wav_with_unknown_data_size_is_accepted():
    data = bytearray(encode(tone(1.0, 16_000), 16_000, subtype="PCM_16"))
    assert data[36:40] == b"data"
    data[40:44] = data[4:8] = b"\xff\xff\xff\xff"  # what ffmpeg writes to a pipe
    assert decode_audio(bytes(data), SPEC, max_seconds=30).shape == (SPEC.n_mels, FRAMES_PER_SECOND)


# --- unsupported and garbage -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "detected"),
    [
        (b"", 422, "empty"),
        (np.random.default_rng(0).bytes(4096), 422, "not a recognisable file"),
        (b"ID3\x04\x00" + bytes(100), 415, "MP3"),
        (b"\x00\x00\x00\x20ftypM4A " + bytes(100), 415, "MP4"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", 422, "not a recognisable file"),  # RIFF, but an image
    ],
)
def test_unaccepted_bytes_are_415_if_recognised_else_422(data, status, detected):
    with pytest.raises(FusionError) as info:
        decode_audio(data, SPEC, max_seconds=30, field="voice")
    assert_error(info, status, "voice")
    assert detected in info.value.message and "WAV, FLAC, OGG" in info.value.message


@pytest.mark.parametrize(
    "data",
    [
        b"RIFF\x00\x10\x00\x00WAVE" + np.random.default_rng(1).bytes(1000),
        b"fLaC" + np.random.default_rng(2).bytes(1000),
        b"OggS" + np.random.default_rng(3).bytes(1000),
        wav_claiming(1.0)[:30],  # header cut inside the fmt chunk
    ],
)
def test_garbage_behind_valid_magic_is_422(data):
    with pytest.raises(InvalidInput) as info:
        decode_audio(data, SPEC, max_seconds=30)
    assert_error(info, 422)


@pytest.mark.parametrize("kept", [0.5, 0.75, 0.99])
@pytest.mark.parametrize(
    ("fmt", "subtype", "rate"),
    [
        ("WAV", "PCM_16", 16_000),
        ("FLAC", "PCM_16", 16_000),
        ("OGG", "VORBIS", 16_000),
        ("OGG", "OPUS", 48_000),
    ],
)
def test_truncated_files_are_422(fmt, subtype, rate, kept):
    # libsndfile alone would decode a cut WAV or Ogg as a shorter clip; these must still be 422.
    data = encode(tone(2.0, rate), rate, fmt, subtype)
    with pytest.raises(InvalidInput, match="truncated") as info:
        decode_audio(data[: int(len(data) * kept)], SPEC, max_seconds=30)
    assert_error(info, 422)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_mangled_files_only_ever_raise_fusion_errors(fmt):
    good = encode(tone(0.5, 16_000), 16_000, fmt)
    rng = np.random.default_rng(7)
    for _ in range(30):
        data = bytearray(good)
        for pos in rng.integers(0, len(data), size=rng.integers(1, 6)):
            data[pos] = int(rng.integers(0, 256))
        try:
            out = decode_audio(bytes(data[: int(rng.integers(len(data) // 2, len(data) + 1))]), SPEC, max_seconds=30)
        except FusionError as error:
            assert error.status in (413, 415, 422)
        else:
            assert out.shape[0] == SPEC.n_mels and np.isfinite(out).all()


# --- lengths: declared, actual, empty ----------------------------------------------------------------


@pytest.mark.parametrize("data", [wav_claiming(3 * 3600), flac_claiming(3 * 3600)], ids=["wav", "flac"])
def test_header_claiming_hours_is_413_before_decoding(data):
    assert len(data) < 20_000
    started = time.perf_counter()
    with pytest.raises(PayloadTooLarge) as info:
        decode_audio(data, SPEC, max_seconds=30)
    assert time.perf_counter() - started < 0.05
    assert_error(info, 413)
    assert "10800.0 s" in info.value.message and "limit is 30 seconds" in info.value.message


def test_header_claiming_less_than_present_is_truncated_not_too_long():
    with pytest.raises(InvalidInput, match="truncated"):
        decode_audio(wav_claiming(5.0), SPEC, max_seconds=30)  # 5 s declared, 0.1 s present


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_longer_than_max_seconds_is_413(fmt, subtype):
    data = encode(tone(3.0, 16_000), 16_000, fmt, subtype)
    with pytest.raises(PayloadTooLarge, match="limit is 2.5 seconds") as info:
        decode_audio(data, SPEC, max_seconds=2.5, field="clip")
    assert_error(info, 413, "clip")


def test_the_model_limit_applies_when_lower_than_the_server_limit():
    data = encode(tone(3.0, 16_000), 16_000)
    with pytest.raises(PayloadTooLarge, match="limit is 2 seconds"):
        decode_audio(data, AudioPreprocess(max_seconds=2.0), max_seconds=30)
    assert decode_audio(data, SPEC, max_seconds=3.0).shape[1] == 3 * FRAMES_PER_SECOND  # at the limit: ok


@pytest.mark.parametrize("fmt", ["WAV", "OGG"])
def test_zero_length_audio_is_422(fmt):
    with pytest.raises(InvalidInput, match="no audio") as info:
        decode_audio(encode(np.zeros(0), 16_000, fmt), SPEC, max_seconds=30)
    assert_error(info, 422)


def test_shorter_than_one_frame_is_422():
    with pytest.raises(InvalidInput, match="too short"):
        decode_audio(encode(tone(0.005, 16_000), 16_000), SPEC, max_seconds=30)


def test_non_finite_samples_are_422():
    samples = tone(0.5, 16_000).astype(np.float32)
    samples[100] = np.nan
    with pytest.raises(InvalidInput, match="NaN"):
        decode_audio(encode(samples, 16_000, subtype="FLOAT"), SPEC, max_seconds=30)


def test_too_many_channels_is_422():
    with pytest.raises(InvalidInput, match="limit is 8"):
        decode_audio(encode(np.zeros((1600, 9)), 16_000), SPEC, max_seconds=30)


def test_implausible_sample_rate_is_422():
    with pytest.raises(InvalidInput, match="sample rate"):
        decode_audio(encode(np.zeros(1000), 500), SPEC, max_seconds=30)
