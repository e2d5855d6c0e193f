"""Audio bytes → the encoder's input: Whisper log-mel or the raw waveform (docs/bad-input.md rows 7–8).

Checks run from cheapest to dearest: magic bytes, the declared length in the header (before any
sample is decoded), then a block-wise decode that never holds more than one multi-channel block,
so a tiny FLAC declaring 8 channels at 384 kHz cannot balloon memory.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr

from service.errors import FusionError, InvalidInput, PayloadTooLarge
from service.manifest import AudioPreprocess
from service.preprocess.sniff import rejection
from service.preprocess.waveform import audio_features

ACCEPTED_AUDIO_FORMATS = ("WAV", "FLAC", "OGG")
_ACCEPTED = ", ".join(ACCEPTED_AUDIO_FORMATS)
MAX_CHANNELS = 8
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 384_000
_BLOCK_FRAMES = 1 << 16
# libsndfile's name for each sniffed container (WAVE_FORMAT_EXTENSIBLE files report WAVEX).
_LIBSNDFILE_FORMATS = {"WAV": ("WAV", "WAVEX"), "FLAC": ("FLAC",), "OGG": ("OGG",)}
_WAV_MAX_CHUNKS = 64  # real files have a handful; bounds the header walk
_WAV_UNKNOWN_SIZE = 0xFFFFFFFF  # streaming writers (ffmpeg to a pipe) put this in the data size
_OGG_MAX_PAGES = 20_000  # ~4 KiB pages: far beyond any accepted duration; bounds the page walk
_OGG_END_OF_STREAM = 0x04

_UNSUPPORTED_MAGIC = (
    (b"ID3", "MP3"),
    (b"\xff\xfb", "MP3"),
    (b"\xff\xf3", "MP3"),
    (b"\xff\xf2", "MP3"),
    (b"\x1aE\xdf\xa3", "WebM/Matroska"),
    (b"FORM", "AIFF"),
    (b"RF64", "RF64"),
)


def sniff_audio_format(data: bytes) -> str | None:
    """The accepted container named by the magic bytes, or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "WAV"
    if data[:4] == b"fLaC":
        return "FLAC"
    if data[:4] == b"OggS":
        return "OGG"
    return None


def _unsupported(data: bytes, field: str) -> FusionError:
    return rejection(data, field, _UNSUPPORTED_MAGIC, "MP4/M4A", "audio format", _ACCEPTED)


def _too_long(seconds: float, limit: float, field: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"{field} is {seconds:.1f} s long; the limit is {limit:g} seconds", field)


def _check_wav_data_chunk(data: bytes, limit: float, field: str) -> None:
    """Compare the WAV data chunk's declared size with the bytes present.

    libsndfile silently clamps a too-large data size to the file, so a header claiming hours and a
    file cut short would both decode as "shorter audio"; only the raw header can tell them apart.
    """
    pos, byte_rate = 12, 0
    for _ in range(_WAV_MAX_CHUNKS):
        if pos + 8 > len(data):
            return  # no data chunk: libsndfile reports it
        chunk_id, size, body = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little"), pos + 8
        if chunk_id == b"fmt " and size >= 16:
            byte_rate = int.from_bytes(data[body + 8 : body + 12], "little")
        elif chunk_id == b"data":
            if size == _WAV_UNKNOWN_SIZE or size <= len(data) - body:
                return
            if byte_rate and size / byte_rate > limit:
                raise _too_long(size / byte_rate, limit, field)
            raise InvalidInput(f"{field}: WAV data is truncated ({len(data) - body} of {size} bytes)", field)
        pos = body + size + (size & 1)  # chunks are word-aligned
    raise InvalidInput(f"{field}: WAV has more than {_WAV_MAX_CHUNKS} chunks before its data", field)


def _check_ogg_pages(data: bytes, field: str) -> None:
    """Walk the Ogg page headers: a cut file ends mid-page or without an end-of-stream page.

    libsndfile takes the length from the last complete page, so a truncated Ogg would otherwise
    decode as a shorter, valid-looking clip.
    """
    pos, flags = 0, 0
    for _ in range(_OGG_MAX_PAGES):
        if pos == len(data):
            break
        table = pos + 27  # fixed page header, then one lacing byte per segment
        if data[pos : pos + 4] != b"OggS" or table > len(data) or table + data[table - 1] > len(data):
            raise InvalidInput(f"{field}: Ogg stream is truncated or corrupt at byte {pos}", field)
        flags, body = data[pos + 5], table + data[table - 1]
        pos = body + sum(data[table:body])
        if pos > len(data):
            raise InvalidInput(f"{field}: Ogg stream is truncated (last page incomplete)", field)
    else:
        raise InvalidInput(f"{field}: Ogg stream has more than {_OGG_MAX_PAGES} pages", field)
    if not flags & _OGG_END_OF_STREAM:
        raise InvalidInput(f"{field}: Ogg stream is truncated (no end-of-stream page)", field)


def _check_header(sound: sf.SoundFile, fmt: str, limit: float, field: str) -> None:
    if sound.format not in _LIBSNDFILE_FORMATS[fmt]:
        raise InvalidInput(f"{field}: content is {sound.format}, not the {fmt} its header names", field)
    if not MIN_SAMPLE_RATE <= sound.samplerate <= MAX_SAMPLE_RATE:
        raise InvalidInput(
            f"{field}: sample rate {sound.samplerate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz",
            field,
        )
    if not 1 <= sound.channels <= MAX_CHANNELS:
        raise InvalidInput(f"{field} has {sound.channels} channels; the limit is {MAX_CHANNELS}", field)
    if sound.frames <= 0:
        raise InvalidInput(f"{field} contains no audio (0 samples)", field)
    if sound.frames / sound.samplerate > limit:
        raise _too_long(sound.frames / sound.samplerate, limit, field)


def _read_mono(sound: sf.SoundFile, field: str) -> np.ndarray:
    """Decode block by block, averaging channels as we go (downmix = mean)."""
    mono = np.empty(sound.frames, dtype=np.float32)
    done = 0
    while done < sound.frames:
        block = sound.read(min(_BLOCK_FRAMES, sound.frames - done), dtype="float32", always_2d=True)
        if block.shape[0] == 0:
            break
        mono[done : done + block.shape[0]] = block.mean(axis=1, dtype=np.float32)
        done += block.shape[0]
    if done < sound.frames:
        raise InvalidInput(f"{field} is truncated ({done} of {sound.frames} samples decoded)", field)
    if not np.isfinite(mono).all():
        raise InvalidInput(f"{field} contains NaN or infinite samples", field)
    return mono


def _decode_waveform(data: bytes, fmt: str, limit: float, field: str) -> tuple[np.ndarray, int]:
    try:
        with sf.SoundFile(io.BytesIO(data)) as sound:
            _check_header(sound, fmt, limit, field)
            return _read_mono(sound, field), sound.samplerate
    except FusionError:
        raise
    except Exception as exc:  # untrusted bytes: libsndfile errors, plus ValueError/TypeError from soundfile
        reason = getattr(exc, "error_string", None) or str(exc)
        message = f"{field}: cannot decode {fmt} audio (truncated or corrupt): {reason}"
        raise InvalidInput(message, field) from exc


def decode_audio(data: bytes, spec: AudioPreprocess, *, max_seconds: float, field: str = "audio") -> np.ndarray:
    """WAV/FLAC/OGG bytes → float32 [n_mels, T] (log-mel) or [1, T] (waveform): mono, resampled to
    spec.sample_rate, through the spec's front end.

    The duration limit is min(max_seconds, spec.max_seconds): the server's and the model's.
    """
    limit = min(max_seconds, spec.max_seconds)
    fmt = sniff_audio_format(data)
    if fmt is None:
        raise _unsupported(data, field)
    if fmt == "WAV":
        _check_wav_data_chunk(data, limit, field)
    elif fmt == "OGG":
        _check_ogg_pages(data, field)
    waveform, sample_rate = _decode_waveform(data, fmt, limit, field)
    if sample_rate != spec.sample_rate:
        waveform = soxr.resample(waveform, sample_rate, spec.sample_rate, quality="HQ")
    return audio_features(waveform, spec, field)
