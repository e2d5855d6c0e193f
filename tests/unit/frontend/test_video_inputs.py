"""Video in: OpenAI video_url parts (inline, or an allow-listed URL to fetch), the request's options on every item;
and what decoding measured out: the video metrics and Server-Timing's decoding stages."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.errors import InvalidInput
from service.frontend.api.openai_inputs import parse_input
from service.frontend.cycle import Served, record_stages
from service.items import PreparedItem
from service.metrics import Metrics
from service.settings import Settings
from tests.unit.frontend.video_results import inference, text_result, video_result

CLIP = b"\x00\x00\x00\x18ftypisom-not-really-decoded-here"


def video_part(url: str) -> dict:
    return {"type": "video_url", "video_url": {"url": url}}


def test_a_video_url_part_is_the_items_video_and_options_go_on_every_item():
    data_url = "data:video/mp4;base64," + base64.b64encode(CLIP).decode()
    parsed = parse_input([[{"type": "text", "text": "a cat"}, video_part(data_url)], "plain"], Settings(),
                         {"segment_s": 3.0})  # fmt: skip
    clip, plain = parsed.items
    assert clip.video == CLIP and clip.text == "a cat" and parsed.remotes == []
    assert clip.field("video") == "input[0][1].video_url"  # decoding errors name the OpenAI param
    assert [(item.options, item.options_prefix) for item in parsed.items] == [({"segment_s": 3.0}, "")] * 2


def test_a_remote_video_url_is_fetched_only_from_an_allowed_host():
    with pytest.raises(InvalidInput, match="FUSIONSERVE_URL_ALLOW_HOSTS") as caught:
        parse_input([[video_part("https://clips.example/a.mp4")]], Settings())
    assert caught.value.field == "input[0][0].video_url"
    allowed = Settings(url_allow_hosts=["clips.example"])
    (remote,) = parse_input([[video_part("https://clips.example/a.mp4")]], allowed).remotes
    assert (remote.attribute, remote.field, str(remote.url)) == ("video", "input[0][0].video_url",
                                                                 "https://clips.example/a.mp4")  # fmt: skip


def test_two_video_parts_in_one_item_are_refused_naming_the_first():
    data_url = "data:video/mp4;base64," + base64.b64encode(CLIP).decode()
    with pytest.raises(InvalidInput, match=r"the first is input\[0\]\[0\]\.video_url"):
        parse_input([[video_part(data_url), video_part(data_url)]], Settings())


STATS = {"video_seconds": 5.5, "video_frames_decoded": 55, "video_frames_kept": 6, "video_probe_s": 0.002,
         "video_frames_s": 0.040, "video_audio_s": 0.010}  # fmt: skip


def decoded_video() -> PreparedItem:
    return PreparedItem({"text": np.zeros(1), "video": np.zeros(1)}, decode_s=0.05, stats=dict(STATS))


def test_server_timing_names_the_slowest_items_video_stages():
    done = inference(text_result(), video_result())
    slower = decoded_video()
    slower.stats["video_frames_s"] = 0.125
    done.items = [decoded_video(), slower]
    timing = Served(None, done, 0.2).server_timing()
    assert "video-probe;dur=2.00" in timing and "video-frames;dur=125.00" in timing
    assert "video-audio;dur=10.00" in timing
    done.items = [PreparedItem({"text": np.zeros(1)}), PreparedItem({"text": np.zeros(1)})]
    assert "video-" not in Served(None, done, 0.2).server_timing()  # no video: no video stages


def test_video_metrics_count_seconds_frames_and_stage_times():
    metrics, done = Metrics(), inference(text_result(), video_result())
    done.items = [PreparedItem({"text": np.zeros(1)}), decoded_video()]
    record_stages(metrics, "clips", done, 0.001)
    record_stages(metrics, "clips", done, 0.001)
    families = text_string_to_metric_families(metrics.render()[0].decode())
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for family in families for s in family.samples}
    assert samples[("fusionserve_video_seconds_total", (("model", "clips"),))] == 11.0
    assert samples[("fusionserve_video_frames_total", (("kind", "decoded"), ("model", "clips")))] == 110
    assert samples[("fusionserve_video_frames_total", (("kind", "kept"), ("model", "clips")))] == 12
    for stage in ("video_probe", "video_frames", "video_audio"):
        labels = (("modality", "video"), ("model", "clips"), ("stage", stage))
        assert samples[("fusionserve_stage_duration_seconds_count", labels)] == 2, stage
