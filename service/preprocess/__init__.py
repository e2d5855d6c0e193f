"""Bytes → model inputs, shared by the server and the offline trainer so train and serve never drift.

Pure numpy + Pillow / soundfile / soxr / PyAV / tokenizers: never torch or transformers. Every rejection of
user input is a FusionError (service.errors) that names the field and, where there is one, the limit.
"""

from service.errors import FusionError  # re-exported: the trainer catches rejections without importing service.errors
from service.preprocess.audio import ACCEPTED_AUDIO_FORMATS, decode_audio, sniff_audio_format
from service.preprocess.image import ACCEPTED_IMAGE_FORMATS, decode_image, preprocess_image, sniff_image_format
from service.preprocess.mel import log_mel_spectrogram, mel_filters, num_frames
from service.preprocess.text import decode_text, encode_text, load_tokenizer
from service.preprocess.video import ACCEPTED_VIDEO_FORMATS, decode_video, sniff_video_format

__all__ = [
    "FusionError",
    "ACCEPTED_AUDIO_FORMATS",
    "ACCEPTED_IMAGE_FORMATS",
    "ACCEPTED_VIDEO_FORMATS",
    "decode_audio",
    "decode_image",
    "decode_text",
    "decode_video",
    "encode_text",
    "load_tokenizer",
    "log_mel_spectrogram",
    "mel_filters",
    "num_frames",
    "preprocess_image",
    "sniff_audio_format",
    "sniff_image_format",
    "sniff_video_format",
]
