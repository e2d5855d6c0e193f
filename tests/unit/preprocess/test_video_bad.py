"""decode_video refuses bad videos with the FusionError that names the field and the limit, never a 500, and
leaves no temporary file behind whatever the answer."""

from __future__ import annotations

import tempfile
import time

import pytest

from service.errors import DeadlineExceeded, FusionError, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from tests.media import png
from tests.media_video import video_bytes, with_declared_seconds, without_declared_seconds
from tests.unit.preprocess.video_helpers import decode, inputs

FIELD = "items[0].video"


@pytest.fixture(autouse=True)
def spool_dir(tmp_path, monkeypatch):
    """Every test's spooled file goes to its own folder, which must be empty once decode_video has answered."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield tmp_path
    assert list(tmp_path.iterdir()) == []


def _refused(error: type[FusionError], data: bytes, given=None, **limit_changes) -> str:
    with pytest.raises(error) as caught:
        decode(data, given, **limit_changes)
    assert caught.value.field == FIELD and FIELD in caught.value.message
    return caught.value.message


def test_the_spooled_file_is_gone_after_an_answer(spool_dir):
    decode(video_bytes())  # the fixture checks the folder after the refusals too
    assert list(spool_dir.iterdir()) == []


def test_not_a_video_is_415_naming_the_containers():
    message = _refused(UnsupportedMediaType, png())
    assert "MP4/MOV, WebM/MKV, AVI" in message
    assert "FLV is not" in _refused(UnsupportedMediaType, b"FLV\x01\x05" + bytes(64))
    assert "empty" in _refused(InvalidInput, b"")


@pytest.mark.parametrize("container", ["mp4", "mkv", "avi"])
def test_truncated_is_422(container):
    data = video_bytes(container=container, seconds=6.0)
    message = _refused(InvalidInput, data[: len(data) // 2])
    assert "fusionserve-video-" not in message  # the spooled file's path is the server's, never the caller's


def test_garbage_inside_a_valid_header_is_a_fusion_error_or_decodes():
    data = bytearray(video_bytes(container="mkv", seconds=3.0))
    middle = len(data) // 2
    data[middle : middle + 2000] = bytes(range(256)) * 7 + bytes(208)
    try:
        decode(bytes(data))
    except FusionError as error:
        assert error.field == FIELD


def test_a_codec_outside_the_allow_list_is_415_naming_it_and_the_setting():
    message = _refused(UnsupportedMediaType, video_bytes(), video_codecs=("vp9", "av1"))
    assert "h264" in message and "video_codecs: vp9, av1" in message
    message = _refused(UnsupportedMediaType, video_bytes(container="webm"), audio_codecs=("aac",))
    assert "opus" in message and "audio_codecs: aac" in message
    decode(video_bytes(container="webm"), inputs(audio=None), audio_codecs=("aac",))  # a stream not read: no matter


def test_the_header_limits_are_413_naming_the_setting():
    assert "max_video_seconds" in _refused(PayloadTooLarge, video_bytes(seconds=3.0), max_seconds=2.0)
    message = _refused(PayloadTooLarge, video_bytes(size=(64, 48)), max_frame_pixels=64 * 48 - 1)
    assert "64x48" in message and "max_video_frame_pixels" in message
    assert "max_video_segments" in _refused(PayloadTooLarge, video_bytes(seconds=3.0), max_segments=2)
    message = _refused(PayloadTooLarge, video_bytes(seconds=2.0), max_frames=3)
    assert "4 frames" in message and "max_video_frames" in message
    decode(video_bytes(seconds=2.0, video=False), max_frames=3)  # no picture read: no frame kept
    undeclared = without_declared_seconds(video_bytes(container="webm", seconds=3.0))
    assert "runs past 2 s" in _refused(PayloadTooLarge, undeclared, max_seconds=2.0)  # measured, stopped at 2 s


def test_nothing_the_bundle_can_read_is_422():
    assert "no audio encoder" in _refused(InvalidInput, video_bytes(video=False), inputs(audio=None))
    assert "no image encoder" in _refused(InvalidInput, video_bytes(audio=False), inputs(image=None))


def test_a_declared_length_that_lies_is_422():
    short_claim = with_declared_seconds(video_bytes(container="mkv", seconds=4.0), 1.0)
    assert "header says 1.0 s" in _refused(InvalidInput, short_claim)
    long_claim = with_declared_seconds(video_bytes(container="webm", seconds=2.0), 9.0)
    assert "header says 9.0 s" in _refused(InvalidInput, long_claim, max_segments=20)
    sound_only = with_declared_seconds(video_bytes(container="mkv", seconds=4.0, video=False), 1.0)
    assert "audio stream goes on" in _refused(InvalidInput, sound_only)


def test_decoding_never_runs_past_the_limit_whatever_the_header_says():
    # declares 1.5 s (within the 2 s limit) and holds 6 s: the slack would allow 2.5 s, the limit stops at 2
    for video in (True, False):
        liar = with_declared_seconds(video_bytes(container="mkv", seconds=6.0, video=video), 1.5)
        given = inputs(audio=None) if video else inputs()
        message = _refused(InvalidInput, liar, given, max_seconds=2.0)
        assert "header says 1.5 s" in message
        assert ("at 2.1 s" if video else "past 2.0 s") in message
        assert given.stats["video_seconds"] == 1.5


def test_the_deadline_is_checked_while_decoding():
    message = _refused(DeadlineExceeded, video_bytes(), inputs(deadline=time.monotonic() - 1.0))
    assert "deadline" in message
    _refused(DeadlineExceeded, video_bytes(audio=False), inputs(deadline=time.monotonic() - 1.0))
    _refused(DeadlineExceeded, video_bytes(video=False), inputs(deadline=time.monotonic() - 1.0))
