"""The playground with a video model in headless Chromium, network off: a video file and a segment length go as
one multipart classify (segment_s in the query), and the answer's segments are drawn as a timeline, each bar
placed from start_s to end_s and named by the segment's top label, as the API itself answers."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from selenium.webdriver.common.by import By

from tests.browser.conftest import wait_for_text
from tests.browser.test_playground import submit
from tests.bundles import build_bundle, sample_video
from tests.integration.conftest import fast_settings
from tests.integration.live import ThreadedServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def video_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("video-models")
    build_bundle(root, "clips", "1", modalities=("image", "text", "audio", "video"))
    with ThreadedServer(fast_settings(root)) as live:
        yield live


def bar_geometry(browser) -> list[tuple[float, float]]:
    """Each segment bar's (left, width) as fractions of its track."""
    rows = []
    for row in browser.find_elements(By.CSS_SELECTOR, "#segments .segment-row"):
        track = row.find_element(By.CSS_SELECTOR, ".segment-track").rect
        bar = row.find_element(By.CSS_SELECTOR, ".segment-bar").rect
        rows.append(((bar["x"] - track["x"]) / track["width"], bar["width"] / track["width"]))
    return rows


def test_playground_draws_a_videos_segments_on_a_timeline(browser, video_server, network, wait, tmp_path, screenshot):
    clip = sample_video(seed=6, seconds=2.5)
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip)
    browser.get(video_server.base_url + "/")
    wait_for_text(wait, (By.ID, "model-info"), "video")
    assert browser.find_element(By.ID, "video-fieldset").is_enabled()
    browser.find_element(By.ID, "video-file").send_keys(str(path))
    wait_for_text(wait, (By.ID, "video-status"), "clip.mp4")
    browser.find_element(By.ID, "segment-s").send_keys("1")
    submit(browser, wait)
    wait_for_text(wait, (By.ID, "segments-summary"), "segments")

    files = {"video": ("clip.mp4", clip, "video/mp4")}
    params = {"top_k": 5, "explain": "true", "segment_s": "1"}
    expected = httpx.post(video_server.base_url + "/v1/models/clips/classify", files=files, params=params, timeout=60)
    segments = expected.json()["results"][0]["segments"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#segments .segment-row")
    shown = [(float(r.get_attribute("data-start")), float(r.get_attribute("data-end"))) for r in rows]
    assert np.allclose(shown, [(s["start_s"], s["end_s"]) for s in segments])
    labels = [r.find_element(By.CSS_SELECTOR, ".segment-bar").text for r in rows]
    assert labels == [s["labels"][0]["label"] for s in segments]
    end = segments[-1]["end_s"]
    placed = [(s["start_s"] / end, (s["end_s"] - s["start_s"]) / end) for s in segments]
    assert np.allclose(bar_geometry(browser), placed, atol=0.01)
    stages = [row.get_attribute("data-stage") for row in browser.find_elements(By.CSS_SELECTOR, ".timing-row")]
    assert {"video-probe", "video-frames", "video-audio"} <= set(stages)
    browser.execute_script("document.getElementById('segments-block').scrollIntoView()")
    screenshot("playground-video")

    network.assert_only_loopback()
    (sent,) = [r for r in network.sent.values() if "/classify" in r["url"]]
    assert "segment_s=1" in sent["url"] and sent["headers"]["Content-Type"].startswith("multipart/form-data")
