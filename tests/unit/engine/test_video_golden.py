"""Golden examples with a video (tests/bundles.py: decoded MP4s, their segments from the numpy reference) replay
as `fusionserve check` and the registry's load replay them: the clip's answer and every segment's."""

from __future__ import annotations

from service.engine.check import check_bundle
from service.settings import Settings
from tests.bundles import build_bundle


def test_golden_examples_with_a_video_replay(tmp_path):
    directory = build_bundle(tmp_path, "vid", "1", modalities=("image", "text", "audio", "video"))
    report = check_bundle(directory, Settings())
    assert report["ok"], report["reason"]
    videos = [out for out in report["outputs"] if out["segments"]]
    assert len(videos) == 2 and all(len(out["segments"]) == 3 for out in videos)  # 2.1-2.9 s: three 1 s segments
    assert report["golden_max_error"] <= 1e-5
