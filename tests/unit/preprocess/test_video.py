"""decode_video on real clips of every container/codec family: shapes, which frame each sample time got, the
sound per segment, rotation, variable frame rate, clips without sound or picture, segmentation with overlap."""

from __future__ import annotations

import numpy as np
import pytest

from service.preprocess.mel import num_frames
from service.preprocess.video_plan import sample_times, segment_bounds
from tests.media_video import tone_amplitude, video_bytes, without_declared_seconds
from tests.unit.preprocess.video_helpers import MEL, PIXELS, VIDEO, decode, inputs, on_screen, picked_times, pictures

FAMILIES = [
    dict(container="mp4"),  # H.264 + AAC
    dict(container="mp4", acodec="mp3"),  # the wheel has libmp3lame
    dict(container="mov"),  # H.264 + PCM
    dict(container="mov", vcodec="libx265"),  # HEVC + PCM
    dict(container="webm"),  # VP9 + Opus
    dict(container="webm", vcodec="libvpx"),  # VP8 + Opus
    dict(container="mkv"),  # AV1 (SVT-AV1, decoded by dav1d) + Opus
    dict(container="mkv", acodec="flac"),
    dict(container="avi"),  # MPEG-4 part 2 + PCM
]


def _expected_sound_rms(start: float, end: float, seconds: float) -> float:
    t = np.arange(round(start * 16_000), round(end * 16_000)) / 16_000
    return float(np.sqrt(np.mean((tone_amplitude(t, seconds) * np.sin(2 * np.pi * 440 * t)) ** 2)))


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: "-".join(f.values()))
def test_every_family_decodes_to_the_frames_on_screen_and_the_sound_of_each_segment(family):
    seconds = 2.0
    given = inputs()
    out = decode(video_bytes(seconds=seconds, **family), given)
    bounds = out.bounds.tolist()
    assert bounds[0] == [0.0, 1.0] and len(bounds) == 2 and bounds[1][1] == pytest.approx(seconds, abs=0.01)
    targets = [(t, g) for g, (s, e) in enumerate(bounds) for t in sample_times(s, e, VIDEO)]
    assert out.frames.shape == (len(targets), 3, 64, 64) and out.frames.dtype == np.float32
    assert out.frame_segment.tolist() == [g for _, g in targets]
    for (target, _), got in zip(targets, picked_times(out.frames, seconds), strict=True):
        assert got == pytest.approx(on_screen(target, 10, seconds), abs=0.03)
    assert out.audio.shape == (2, 1, 16_000) and out.audio_length.tolist() == [16_000, 16_000]
    for g, (start, end) in enumerate(bounds):
        rms = float(np.sqrt(np.mean(out.audio[g, 0] ** 2)))  # the rising tone: the later segment louder
        assert rms == pytest.approx(_expected_sound_rms(start, min(end, seconds), seconds), rel=0.1)
    assert given.stats["video_frames_kept"] == len(targets)
    assert given.stats["video_seconds"] == pytest.approx(seconds, abs=0.01)
    assert set(given.stats) == {"video_seconds", "video_frames_decoded", "video_frames_kept", "video_frames_s",
                                "video_audio_s", "video_probe_s"}  # fmt: skip


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_a_rotated_clip_comes_out_upright_with_the_marker_top_left(rotation):
    spec = PIXELS.model_copy(update={"size": 48})  # stretched: every corner stays in the picture
    out = decode(video_bytes(size=(64, 48), rotation=rotation, audio=False), inputs(image=spec))
    picture = pictures(out.frames)[0].astype(int)  # [48,48,3]: the upright 64x48
    assert picture.shape == (48, 48, 3)
    top_left = picture[1:5, 1:5].mean(axis=(0, 1))
    assert top_left[0] > 200 and top_left[1] < 60, top_left  # red
    assert picture[1:5, -5:-1, 0].mean() < 60 and picture[-12:-8, 1:5, 0].mean() < 60  # no marker elsewhere


def test_variable_frame_rate_picks_by_timestamp():
    seconds = 3.0
    out = decode(video_bytes(seconds=seconds, vfr=True, audio=False))
    targets = [t for s, e in segment_bounds(seconds, 1.0, 0.0) for t in sample_times(s, e, VIDEO)]
    expected = [on_screen(t, 10, seconds, vfr=True) for t in targets]
    assert picked_times(out.frames, seconds) == pytest.approx(expected, abs=0.03)
    # by index at the nominal 10 frames/s it would be other frames
    assert expected != [on_screen(t, 10, seconds) for t in targets]


def test_no_sound_and_no_picture():
    silent = decode(video_bytes(audio=False))
    assert silent.audio.shape == (2, 1, 0) and silent.audio_length.tolist() == [0, 0]
    assert silent.frames.shape[0] == 4
    blind = decode(video_bytes(video=False))
    assert blind.frames.shape == (0, 3, 64, 64) and blind.frame_segment.shape == (0,)
    assert blind.audio_length.tolist() == [16_000, 16_000]


def test_a_stream_the_bundle_has_no_encoder_for_is_not_decoded():
    given = inputs(audio=None)
    no_audio_encoder = decode(video_bytes(), given)
    assert no_audio_encoder.audio.shape == (2, 1, 0) and not no_audio_encoder.audio_length.any()
    assert given.stats["video_audio_s"] < 0.05 and no_audio_encoder.frames.shape[0] == 4
    no_image_encoder = decode(video_bytes(), inputs(image=None))
    assert no_image_encoder.frames.shape == (0, 3, 1, 1) and no_image_encoder.audio_length.tolist() == [16_000] * 2


def test_segments_overlap_and_share_frames():
    seconds = 4.0
    out = decode(video_bytes(seconds=seconds), inputs(segment_s=2.0, overlap_s=1.0))
    assert out.bounds.tolist() == [[0.0, 2.0], [1.0, 3.0], [2.0, 4.0]]
    assert out.frame_segment.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    times = picked_times(out.frames, seconds)
    for g, (start, end) in enumerate(out.bounds.tolist()):
        expected = [on_screen(t, 10, seconds) for t in sample_times(start, end, VIDEO)]
        assert times[4 * g : 4 * g + 4] == pytest.approx(expected, abs=0.04)
    assert out.audio_length.tolist() == [32_000] * 3
    np.testing.assert_allclose(out.audio[1, 0, :16_000], out.audio[0, 0, 16_000:])  # the shared second


def test_log_mel_sound_and_pixels_for_a_graph_that_normalises():
    graph = PIXELS.model_copy(update={"normalise": "graph", "size": 32})
    out = decode(video_bytes(seconds=2.0, acodec="aac"), inputs(image=graph, audio=MEL))
    assert out.frames.dtype == np.uint8 and out.frames.shape == (4, 3, 32, 32)
    assert out.audio.shape == (2, 80, num_frames(16_000, MEL)) and out.audio.dtype == np.float32
    assert (out.audio_length == num_frames(16_000, MEL)).all()


def test_seeking_decodes_fewer_frames_than_the_clip_has_and_picks_the_same_frames():
    seconds, sparse = 8.0, VIDEO.model_copy(update={"frames_per_second": 0.5})
    keyframes_often, given = video_bytes(seconds=seconds, fps=10, gop=5, audio=False), inputs(video=sparse)
    one_keyframe = video_bytes(seconds=seconds, fps=10, gop=1000, audio=False)
    seeking = decode(keyframes_often, given)
    reading_all = decode(one_keyframe, inputs(video=sparse))
    assert given.stats["video_frames_decoded"] < 40  # of 80: only from the keyframe before each target
    assert picked_times(seeking.frames, seconds) == pytest.approx(picked_times(reading_all.frames, seconds), abs=0.05)
    expected = [on_screen(t, 10, seconds) for s, e in seeking.bounds.tolist() for t in sample_times(s, e, sparse)]
    assert picked_times(seeking.frames, seconds) == pytest.approx(expected, abs=0.05)  # half a frame


def test_a_recording_that_declares_no_length_is_measured_from_its_packets():
    given = inputs()
    out = decode(without_declared_seconds(video_bytes(container="webm", seconds=3.0)), given)
    assert given.stats["video_seconds"] == pytest.approx(3.0, abs=0.02)
    assert out.bounds.shape == (3, 2) and out.audio_length.tolist() == [16_000] * 3
    assert picked_times(out.frames, 3.0)[:2] == pytest.approx([on_screen(0.25, 10, 3.0), on_screen(0.75, 10, 3.0)],
                                                               abs=0.03)  # fmt: skip
