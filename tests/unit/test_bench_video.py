"""The video bench's pure parts: its clips, the reference's frame choice, Server-Timing parsing and the ratios."""

from __future__ import annotations

import av
import pytest

from bench.video_clips import FPS, GOP_FRAMES, ClipSpec, write_clip
from bench.video_reference import decode_all, decode_at, duration_of, measure, targets
from bench.video_report import markdown, ratios
from bench.video_server import server_timing

SECONDS = 4.0


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return write_clip(ClipSpec("360p", "motion", SECONDS), tmp_path_factory.mktemp("clips") / "motion.mp4")


def test_targets_are_the_servers_one_per_second_at_the_middle():
    assert targets(60.0) == [k + 0.5 for k in range(60)]
    assert targets(2.5) == pytest.approx([2.5 / 6, 1.25, 2.5 * 5 / 6])  # one segment, 3 frames spread evenly
    assert targets(10.0)[-2:] == [8.5, 9.5]  # the 2 s tail is a segment of its own


def test_clip_is_h264_aac_30fps_with_a_keyframe_every_gop(clip_path):
    with av.open(str(clip_path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
        assert (video.width, video.height, video.average_rate) == (640, 360, FPS)
        keys = [p.pts * p.time_base for p in container.demux(video) if p.is_keyframe]
    assert keys == [k * GOP_FRAMES / FPS for k in range(int(SECONDS * FPS / GOP_FRAMES))]
    assert duration_of(clip_path) == pytest.approx(SECONDS, abs=0.1)


def test_every_way_finds_the_frame_shown_at_each_target(clip_path):
    times = targets(SECONDS)
    shown = tuple(round(t * FPS) / FPS for t in times)  # 0.5 s is frame 15 exactly, at 30 fps
    seek, near = decode_at(clip_path, times, near=False), decode_at(clip_path, times, near=True)
    every = decode_all(clip_path, times, convert_all=False)
    assert seek.times == near.times == every.times == pytest.approx(shown)
    assert every.decoded == SECONDS * FPS
    # a seek per target decodes the first GOP's frames twice; decoding on inside a GOP does not
    assert near.decoded < every.decoded < seek.decoded


def test_measure_reports_each_way(clip_path):
    result = measure(clip_path, ["all_frames", "audio"])
    assert result["targets"] == 4
    assert result["all_frames"]["frames_converted"] == result["all_frames"]["frames_decoded"] == SECONDS * FPS
    assert result["audio"]["samples_16k"] == pytest.approx(SECONDS * 16_000, rel=0.02)


def test_server_timing_reads_each_stage():
    header = "preprocess;dur=12.5, video-frames;dur=800.25;desc=x, video-audio;dur=30"
    assert server_timing(header) == {"preprocess": 12.5, "video-frames": 800.25, "video-audio": 30.0}


def test_ratios_per_video_minute_against_the_reference():
    clip = {"seconds": 30.0, "content": "motion", "resolution": "720p"}
    ways = {"seek": 2.0, "seek_near": 1.5, "all_decoded": 1.8, "all_frames": 3.0, "audio": 0.1}
    reference = {"c": {"clip": clip, "bytes": 10**6, "targets": 30}
                 | {way: {"cpu_s": cpu, "frames_decoded": 9} for way, cpu in ways.items()}}  # fmt: skip
    served = {"clips": {"c": {"cpu_s_per_clip": 2.4, "server_timing_ms": {"video-frames": 900.0}}},
              "loops": [], "loop_clip": {"seconds": 10.0, "resolution": "720p", "bytes": 10**6}}  # fmt: skip
    results = {"reference": reference, "server": served}
    found = ratios(results)["c"]
    assert (found["server_cpu_s_per_minute"], found["reference_cpu_s_per_minute"]) == (4.8, 4.0)
    assert (found["server_over_reference"], found["met"]) == (1.2, True)
    assert (found["cheapest_way"], found["server_over_cheapest"]) == ("seek_near", 1.6)
    machine = {"cpu_model": "cpu", "usable_cores": 2, "git_commit": "abc", "git_dirty": False, "date": "today"}
    text = markdown(results | {"ratios": {"c": found}, "machine": machine, "quick": False, "command": "python -m x",
                               "load_average_before": [0], "load_average_after": [0], "wall_s": 1})  # fmt: skip
    assert "| c | 4.80 | 4.00 | 1.20 | ≤ 1.25 met | 1.60 (seek_near) | 900 |" in text
