"""fusionserve_client and the CLI with a video: the file part / base64 field and the segmentation options it sends,
the typed segments it reads back (from the body the server's own v1 routes write), and the CLI's timeline."""

from __future__ import annotations

import base64
import json

import orjson
import pytest

from fusionserve_client import Segment, SegmentEmbedding
from fusionserve_client.cli import render
from service.frontend.api import routes
from tests.unit.frontend.video_results import inference, state, text_result, video_result
from tests.unit.test_client_inputs import Recorder, form_parts

CLIP = b"\x00\x00\x00\x18ftypisom...a clip"


def served(respond) -> dict:
    """What the server's v1 route writes for a text item and a video item, as JSON."""
    done = inference(text_result(), video_result())
    return orjson.loads(orjson.dumps(respond(state(), done), option=orjson.OPT_SERIALIZE_NUMPY))


def test_one_video_goes_as_a_file_part_with_its_segmentation_in_the_query(tmp_path):
    path = tmp_path / "walk.mp4"
    path.write_bytes(CLIP)
    recorder = Recorder(served(routes._classify_body(2, True)))
    with recorder.client() as client:
        client.classify("clips", text="a walk", video=path, segment_s=1.5, overlap_s=0.5, explain=True)
    request = recorder.requests[-1]
    assert form_parts(request)["video"] == ("walk.mp4", CLIP) and form_parts(request)["text"][1] == b"a walk"
    assert dict(request.url.params) == {"top_k": "5", "explain": "true", "segment_s": "1.5", "overlap_s": "0.5"}


def test_a_batch_carries_videos_as_base64_and_the_options_once():
    recorder = Recorder(served(routes._embed_body))
    with recorder.client() as client:
        client.embed_batch("clips", [{"text": "a"}, {"video": CLIP}], segment_s=2)
    request = recorder.requests[-1]
    assert json.loads(request.content)["inputs"][1] == {"video": base64.b64encode(CLIP).decode()}
    assert dict(request.url.params) == {"segment_s": "2"}  # unset options are the model's defaults


def test_classify_reads_segments_as_dataclasses():
    recorder = Recorder(served(routes._classify_body(2, True)))
    with recorder.client() as client:
        text, video = client.classify_batch("clips", [{"text": "a"}, {"video": CLIP, "text": "b"}], explain=True)
    assert text.segments is None
    first, silent, last = video.segments
    assert isinstance(first, Segment) and (first.start_s, first.end_s, first.top.label) == (0.0, 2.0, "dog")
    assert silent.modalities == [] and [e.modality for e in silent.evidence] == ["text"]
    assert [e.modality for e in last.evidence] == ["text", "video_frames"] and last.agreement is False
    assert [e.modality for e in video.evidence] == ["text", "video_frames"]


def test_embed_reads_the_clips_slots_and_each_segments():
    recorder = Recorder(served(routes._embed_body))
    with recorder.client() as client:
        _, video = client.embed_batch("clips", [{"text": "a"}, {"video": CLIP}])
    assert sorted(video.per_modality) == ["text", "video_frames"]
    assert all(isinstance(s, SegmentEmbedding) for s in video.segments)
    assert [sorted(s.per_slot) for s in video.segments] == [["video_frames"], [], ["video_frames"]]
    assert video.segments[2].fused == pytest.approx(video_result().segments.fused[2].tolist())


def test_the_cli_prints_a_timeline_of_segments():
    recorder = Recorder(served(routes._classify_body(1, False)))
    with recorder.client() as client:
        _, video = client.classify_batch("clips", [{"text": "a"}, {"video": CLIP}])
    lines = render(video).splitlines()
    timeline = lines[lines.index("segments (3)") + 1 :]
    assert [line.split()[:3] for line in timeline] == [["0.00-2.00", "s", "dog"], ["2.00-4.00", "s", "owl"],
                                                        ["4.00-5.50", "s", "cat"]]  # fmt: skip
    assert timeline[0].endswith("video_frames") and timeline[1].endswith("no picture or sound")
    recorder = Recorder(served(routes._embed_body))
    with recorder.client() as client:
        _, embedded = client.embed_batch("clips", [{"text": "a"}, {"video": CLIP}])
    assert "segments (3)" in render(embedded) and "video_frames" in render(embedded)
