"""Video: an encoded file (MP4/MOV, WebM/MKV, AVI) → VideoArrays (service/items.py): frames kept at the bundle's
rate, preprocessed for the image encoder, and the sound track per segment, for the audio encoder
(service/preprocess/video.py). The frames join the image batcher and the sound the audio batcher; what this
modality's own component runs is the bundle's temporal pooling, over one segment's frame embeddings, so
`collate` and `item_length` are about those ([K,D] each), not about the decoded VideoArrays."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from service.errors import InvalidInput
from service.items import RawItem, VideoArrays
from service.manifest import VideoEncoder, VideoPreprocess
from service.modalities.spec import Item, ModalitySpec, PartNames, as_tuples
from service.preprocess.padding import pad_stack
from service.preprocess.video import ACCEPTED_VIDEO_FORMATS, decode_video, sniff_video_format
from service.preprocess.video_plan import VideoInputs, VideoLimits, sample_times
from service.preprocess.waveform import input_length, silence

OPTIONS = ("segment_s", "overlap_s")  # the request options a video reads (RawItem.options)


def _option(raw: RawItem, name: str, default: float) -> float:
    value = raw.options.get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise InvalidInput(f"{raw.options_prefix}{name} must be a number of seconds, got {value!r}",
                           field=f"{raw.options_prefix}{name}")  # fmt: skip
    return number


def segmentation(raw: RawItem, video: VideoPreprocess, longest_audio_s: float | None) -> tuple[float, float]:
    """The request's segment_s and overlap_s (the bundle's defaults where absent), checked: segment_s in
    (0, the audio encoder's longest clip], 0 <= overlap_s < segment_s."""
    segment = _option(raw, "segment_s", video.segment_s)
    overlap = _option(raw, "overlap_s", video.overlap_s if "segment_s" not in raw.options else 0.0)
    top = longest_audio_s if longest_audio_s is not None else video.max_seconds
    if not 0 < segment <= top:
        raise InvalidInput(f"{raw.options_prefix}segment_s must be > 0 and at most {top:g} s, got {segment:g}",
                           field=f"{raw.options_prefix}segment_s")  # fmt: skip
    if not 0 <= overlap < segment:
        raise InvalidInput(
            f"{raw.options_prefix}overlap_s must be >= 0 and below segment_s ({segment:g} s), got {overlap:g}",
            field=f"{raw.options_prefix}overlap_s",
        )
    return segment, overlap


class VideoModality(ModalitySpec):
    name = "video"
    parts = PartNames(v1="video", v2="video", openai="video_url")
    encoded_file = True
    accepted_formats = ACCEPTED_VIDEO_FORMATS
    notes = "H.264, HEVC, VP8/VP9, AV1 or MPEG-4 video; AAC, Opus, MP3, Vorbis, FLAC or PCM sound; answered per segment"
    encoder_class = VideoEncoder
    preprocess_class = VideoPreprocess
    limit_setting = "max_video_seconds"

    def sniff(self, data: bytes) -> str | None:
        return sniff_video_format(data)

    def limit(self, preprocess: VideoPreprocess, settings) -> float:
        return min(super().limit(preprocess, settings), preprocess.max_seconds)

    def preprocess_of(self, manifest, raw: RawItem, deadline: float | None) -> VideoInputs:
        image, audio = manifest.encoder("image"), manifest.encoder("audio")
        video = manifest.encoder("video").preprocess
        longest_audio = audio.preprocess.max_seconds if audio is not None else None
        segment, overlap = segmentation(raw, video, longest_audio)
        return VideoInputs(video, image.preprocess if image else None, audio.preprocess if audio else None,
                           segment, overlap, deadline)  # fmt: skip

    def decode(self, value, preprocess: VideoInputs, settings, field: str, tokenizer=None) -> VideoArrays:
        return decode_video(value, preprocess, VideoLimits.of(settings, preprocess.video), field=field)

    def collate(self, items: Sequence[Item], pad_multiple: int = 1) -> tuple[np.ndarray, ...]:
        """Segments' frame embeddings [K_i,D] → frame_embeddings [B,K,D] zero-padded, frame_mask [B,K]."""
        stacks = [item[0] for item in as_tuples(items)]
        longest = max(stack.shape[0] for stack in stacks)
        padded = np.zeros((len(stacks), longest, stacks[0].shape[1]), np.float32)  # [B,K,D]
        for row, stack in enumerate(stacks):
            padded[row, : stack.shape[0]] = stack
        mask = pad_stack([np.ones(stack.shape[0], np.float32) for stack in stacks], longest)  # [B,K]
        return padded, mask

    def item_length(self, item: Item, preprocess) -> int:
        return int(as_tuples([item])[0][0].shape[0])  # frames pooled

    def warmup_input(self, preprocess: VideoInputs, length: int | None, tokenizer=None) -> VideoArrays:
        """One segment of preprocess.segment_s: its frames black, its sound silent (what the bundle has)."""
        image, audio, length = preprocess.image, preprocess.audio, preprocess.segment_s
        count = len(sample_times(0.0, length, preprocess.video)) if image else 0
        side = image.size if image else 1
        frames = np.zeros((count, 3, side, side), np.float32)  # [N,3,S,S]
        empty = np.zeros((1, 1, 0), np.float32)  # [G=1,C,T=0]: no sound
        sound = silence(input_length(length, audio), audio)[None] if audio else empty
        bounds = np.array([[0.0, length]], np.float32)  # [1,2]
        return VideoArrays(frames, np.zeros(count, np.int32), bounds, sound, np.array([sound.shape[-1]], np.int32))


VIDEO = VideoModality()
