"""Decoded videos through the engine: golden examples with a video (tests/bundles.py: MP4s, their segments from
the numpy reference) replay as `fusionserve check` and the registry's load replay them, and real clips with and
without sound or picture, segmented as a request asks, are served as the reference answers them."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from service.engine.check import check_bundle
from service.engine.pipeline import Pipeline
from service.items import PreparedItem, RawItem
from service.metrics import Metrics
from service.preprocess.prepare import prepare_item
from service.settings import Settings
from tests.bundle_reference import reference_of_arrays
from tests.bundles import build_bundle, sample_video
from tests.unit.engine.video_items import assert_reference, video_bundle


def test_golden_examples_with_a_video_replay(tmp_path):
    directory = build_bundle(tmp_path, "vid", "1", modalities=("image", "text", "audio", "video"))
    report = check_bundle(directory, Settings())
    assert report["ok"], report["reason"]
    videos = [out for out in report["outputs"] if out["segments"]]
    assert len(videos) == 2 and all(len(out["segments"]) == 3 for out in videos)  # 2.1-2.9 s: three 1 s segments
    assert report["golden_max_error"] <= 1e-5


@pytest.mark.parametrize(
    "options", [{}, {"audio": False}, {"video": False}], ids=["picture-and-sound", "no-sound", "no-picture"]
)
async def test_a_decoded_video_is_served_as_the_reference(tmp_path, options):
    """Real MP4s, decoded with a request's own segmentation, through the batchers beside an image request."""
    bundle = video_bundle(tmp_path)
    raw = RawItem(video=sample_video(seed=3, **options), options={"segment_s": "0.8", "overlap_s": 0.2})
    item = prepare_item(raw, bundle.manifest, bundle.tokenizer, Settings())
    image = PreparedItem({"image": np.zeros((3, 16, 16), np.float32)})
    pipeline = Pipeline("vid", bundle.encoders, bundle.fusion, Settings(), Metrics(), answer_chunk=None)
    await pipeline.start()
    try:
        result, _ = await asyncio.gather(*(pipeline.run(i, time.monotonic() + 30) for i in (item, image)))
    finally:
        await pipeline.stop()
    expected = reference_of_arrays(bundle.directory, item.arrays)
    assert_reference(result, expected)
    assert len(result.segments) == len(expected["segments"]) >= 3  # 2.1-2.9 s in 0.8 s segments every 0.6 s
    wanted = [slot for slot, kept in (("video_frames", "video" not in options), ("video_audio", "audio" not in options))
              if kept]  # fmt: skip
    assert sorted(result.embeddings) == sorted(wanted)
