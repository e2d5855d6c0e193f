"""A video's sound track → the audio encoder's input per segment: decoded, resampled to the encoder's rate
(FFmpeg's resampler), channels averaged to mono, placed on the clip's timeline, cut at each segment's bounds,
each cut through the audio front end (waveform.audio_features: log-mel or samples). A segment without sound
has length 0."""

from __future__ import annotations

import av
import numpy as np

from service.errors import InvalidInput
from service.manifest import AudioPreprocess
from service.preprocess.mel import num_frames
from service.preprocess.video_plan import VideoLimits
from service.preprocess.video_probe import Probe, check_deadline
from service.preprocess.waveform import audio_features


def read_sound(container, stream, probe: Probe, spec: AudioPreprocess, limits: VideoLimits, deadline: float | None,
               field: str) -> np.ndarray:  # fmt: skip
    """The whole track: float32 [samples] at spec.sample_rate, sample 0 at the clip's time 0."""
    rate, cutoff = spec.sample_rate, probe.cutoff(limits)
    # the channels kept and averaged here, as decode_audio downmixes: FFmpeg's own stereo → mono is
    # (L + R) / sqrt(2), louder than the same sound sent as an audio file
    resampler = av.AudioResampler(format="fltp", rate=rate)
    chunks, offset, total = [], None, 0
    for packet in container.demux(stream):
        check_deadline(deadline, field)
        for frame in packet.decode():
            if offset is None and frame.pts is not None:  # the track may start after the picture
                offset = round((float(frame.pts * frame.time_base) - probe.start) * rate)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().mean(axis=0, dtype=np.float32))
                total += chunks[-1].shape[0]
        if ((offset or 0) + total) / rate > cutoff:
            raise InvalidInput(f"{field}: the audio stream goes on past {cutoff:.1f} s but its header says "
                               f"{probe.duration:.1f} s", field)  # fmt: skip
    chunks += [out.to_ndarray().mean(axis=0, dtype=np.float32) for out in resampler.resample(None)]
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    offset = offset or 0
    samples = np.concatenate([np.zeros(offset, np.float32), samples]) if offset > 0 else samples[-offset:]
    if samples.shape[0] / rate < probe.sound_end - probe.slack:
        raise InvalidInput(f"{field}: the audio stream ends at {samples.shape[0] / rate:.1f} s but its header says "
                           f"{probe.sound_end:.1f} s (truncated?)", field)  # fmt: skip
    if not np.isfinite(samples).all():
        raise InvalidInput(f"{field}: the audio stream has NaN or infinite samples", field)
    return samples


def _too_short(samples: int, spec: AudioPreprocess) -> bool:
    if spec.front_end == "waveform":
        return samples < spec.min_samples
    return num_frames(samples, spec) == 0


def channels(spec: AudioPreprocess | None) -> int:
    return 1 if spec is None or spec.front_end == "waveform" else spec.n_mels


def segment_sound(samples: np.ndarray | None, bounds: list[tuple[float, float]], spec: AudioPreprocess | None,
                  field: str) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per segment: audio [G,C,Tmax] f32 zero-padded, audio_length [G] i32 (0: no sound in that segment)."""
    features = []
    for start, end in bounds:
        cut = np.zeros(0, np.float32) if samples is None else samples[round(start * spec.sample_rate) :
                                                                      round(end * spec.sample_rate)]  # fmt: skip
        features.append(None if spec is None or _too_short(cut.shape[0], spec) else audio_features(cut, spec, field))
    lengths = np.array([0 if f is None else f.shape[-1] for f in features], np.int32)  # [G]
    audio = np.zeros((len(bounds), channels(spec), int(lengths.max(initial=0))), np.float32)  # [G,C,T]
    for row, f in enumerate(features):
        if f is not None:
            audio[row, :, : f.shape[-1]] = f
    return audio, lengths
