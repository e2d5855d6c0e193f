"""Audio: an encoded file (WAV, FLAC, OGG) → log-mel [n_mels,T] or the resampled waveform [1,T] float32; a
batch is padded to its longest item (rounded up to the bundle's frames_multiple) with a frame mask, and an
item costs its 10 ms frames against FUSIONSERVE_AUDIO_FRAME_BUDGET."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.manifest import AudioEncoder, AudioPreprocess
from service.modalities.spec import Item, ModalitySpec, PartNames, as_tuples
from service.preprocess.audio import ACCEPTED_AUDIO_FORMATS, decode_audio, sniff_audio_format
from service.preprocess.padding import pad_stack
from service.preprocess.waveform import budget_frames, input_length, silence

TRAFFIC_SECONDS = 2.0  # a traffic-like warm-up clip


class AudioModality(ModalitySpec):
    name = "audio"
    parts = PartNames(v1="audio", v2="audio", openai="input_audio")
    encoded_file = True
    accepted_formats = ACCEPTED_AUDIO_FORMATS
    notes = "any rate, mono/stereo"
    encoder_class = AudioEncoder
    preprocess_class = AudioPreprocess
    limit_setting = "max_audio_seconds"
    budget_setting = "audio_frame_budget"

    def sniff(self, data: bytes) -> str | None:
        return sniff_audio_format(data)

    def limit(self, preprocess: AudioPreprocess, settings) -> float:
        return min(super().limit(preprocess, settings), preprocess.max_seconds)  # the server's and the bundle's

    def decode(self, value, preprocess: AudioPreprocess, settings, field: str, tokenizer=None) -> np.ndarray:
        return decode_audio(value, preprocess, max_seconds=self.limit(preprocess, settings), field=field)

    def collate(self, items: Sequence[Item], pad_multiple: int = 1) -> tuple[np.ndarray, ...]:
        tuples = as_tuples(items)
        longest = max(item[0].shape[-1] for item in tuples)
        length = -(-longest // pad_multiple) * pad_multiple
        features = pad_stack([item[0] for item in tuples], length)  # [B,n_mels,T]
        frame_mask = pad_stack([np.ones(item[0].shape[-1], np.float32) for item in tuples], length)  # [B,T]
        return features, frame_mask

    def pad_multiple(self, preprocess: AudioPreprocess) -> int:
        return preprocess.frames_multiple

    def item_length(self, item: Item, preprocess: AudioPreprocess) -> int:
        return budget_frames(int(as_tuples([item])[0][0].shape[-1]), preprocess)

    def warmup_input(self, preprocess: AudioPreprocess, length: int | None, tokenizer=None) -> np.ndarray:
        return silence(input_length(TRAFFIC_SECONDS, preprocess) if length is None else length, preprocess)

    def longest_length(self, preprocess: AudioPreprocess, settings) -> int:
        return input_length(self.limit(preprocess, settings), preprocess)  # decode_audio's limit


AUDIO = AudioModality()
