"""A video item through the engine: segments and the clip equal the numpy reference (tests/bundle_reference.py)
on the direct path and through the batchers, a video's answers do not depend on its batch-mates, its frames
share the image batcher with requests' images, and a video without sound or without picture answers from
what it has."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from service.engine.pipeline import Pipeline, run_direct
from service.errors import DeadlineExceeded
from service.items import ItemResult, PreparedItem
from service.metrics import Metrics
from service.settings import Settings
from tests.bundle_reference import reference_of_arrays
from tests.unit.engine.video_items import assert_reference, video_arrays, video_bundle, video_item


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return video_bundle(tmp_path_factory.mktemp("models"))


def reference(bundle, item: PreparedItem) -> dict:
    return reference_of_arrays(bundle.directory, item.arrays)


def pipeline_of(bundle, **settings) -> Pipeline:
    options = Settings(**settings)
    return Pipeline("vid", bundle.encoders, bundle.fusion, options, Metrics(), answer_chunk=None)


async def served(pipeline: Pipeline, items: list[PreparedItem], deadline_s: float = 30.0) -> list[ItemResult]:
    """The items through the pipeline's batchers at once (one request each)."""
    await pipeline.start()
    try:
        deadline = time.monotonic() + deadline_s
        return await asyncio.gather(*(pipeline.run(item, deadline) for item in items))
    finally:
        await pipeline.stop()


def test_the_direct_path_answers_each_segment_and_the_clip_as_the_reference(bundle):
    item = video_item(bundle, seed=1, frames=(2, 2, 1), sound=(True, False, True))
    (result,) = run_direct(bundle.encoders, bundle.fusion, [item])
    expected = reference(bundle, item)
    assert_reference(result, expected)
    assert result.modalities == ["video"] and len(result.segments) == 3
    assert result.segments.present.tolist() == [[True, True], [True, False], [True, True]]
    assert not np.any(result.segments.embeddings["video_audio"][1])  # no sound there: a zero row
    # the clip's slots: the normalised mean of the segments' (over those that have the slot)
    mean = result.segments.embeddings["video_audio"][[0, 2]].mean(axis=0)
    np.testing.assert_allclose(result.embeddings["video_audio"], mean / np.linalg.norm(mean), atol=1e-6)


def test_other_modalities_join_every_row(bundle):
    others = {"image": np.full((3, 16, 16), 0.3, np.float32), "audio": np.ones((80, 40), np.float32)}
    item = video_item(bundle, seed=2, others=others, frames=(1, 3))
    (result,) = run_direct(bundle.encoders, bundle.fusion, [item])
    assert_reference(result, reference(bundle, item))
    assert sorted(result.embeddings) == ["audio", "image", "video_audio", "video_frames"]
    assert result.modalities == ["image", "audio", "video"]


async def test_the_batched_path_equals_the_reference_with_batch_mates(bundle):
    """Videos of different frame counts, images and audio in the same batches: each answer is its own."""
    image = PreparedItem({"image": np.full((3, 16, 16), -0.2, np.float32)})
    items = [
        video_item(bundle, seed=3, frames=(2, 2, 1)),
        video_item(bundle, seed=4, frames=(4, 1), sound=(False, True)),
        image,
        video_item(bundle, seed=5, others={"text": (np.array([2, 9, 3]), np.ones(3, np.int64))}, frames=(3,)),
    ]
    results = await served(pipeline_of(bundle), items)
    for item, result in zip(items, results, strict=True):
        if "video" in item.arrays:
            assert_reference(result, reference(bundle, item))
    (alone,) = await served(pipeline_of(bundle), [items[0]])
    for field in ("probabilities", "fused"):
        np.testing.assert_allclose(getattr(alone, field), getattr(results[0], field), atol=1e-6, rtol=0)
        np.testing.assert_allclose(getattr(alone.segments, field), getattr(results[0].segments, field), atol=1e-6)


async def test_frames_share_the_image_batcher_with_images(bundle):
    video = video_item(bundle, seed=6, frames=(2, 2, 1))
    image = PreparedItem({"image": np.zeros((3, 16, 16), np.float32)})
    result, image_result = await served(pipeline_of(bundle), [video, image])
    # the image ran in one batch with the video's five frames; the pool ran the three segments together
    assert image_result.batches["image"].size == 6 and result.batches["image"].size == 6
    assert result.batches["video"].size == 3 and result.batches["audio"].size == 3
    assert result.batches["fusion"].size == 4  # three segments and the clip


@pytest.mark.parametrize(
    "shape",
    [{"frames": (2, 1), "sound": (False, False)}, {"frames": (0, 0), "sound": (True, True)}],
    ids=["no-sound", "no-picture"],
)
async def test_a_video_answers_from_what_it_has(bundle, shape):
    item = video_item(bundle, seed=7, **shape)
    (result,) = await served(pipeline_of(bundle), [item])
    expected = reference(bundle, item)
    assert_reference(result, expected)
    slot = "video_frames" if shape["frames"][0] else "video_audio"
    assert list(result.embeddings) == [slot] and list(result.segments.embeddings) == [slot]
    assert [result.segments.slots(row) for row in range(2)] == [[slot], [slot]]


def test_a_bundle_without_an_image_encoder_answers_from_the_sound(tmp_path):
    bundle = video_bundle(tmp_path, modalities=("audio", "video"))
    assert bundle.manifest.fusion.modalities == ["audio", "video_audio"]
    item = PreparedItem({"video": video_arrays(bundle, seed=8, frames=(0, 0))})
    (result,) = run_direct(bundle.encoders, bundle.fusion, [item])
    assert_reference(result, reference(bundle, item))
    assert list(result.embeddings) == ["video_audio"]


async def test_a_video_past_its_deadline_is_refused(bundle):
    pipeline = pipeline_of(bundle)
    await pipeline.start()
    try:
        with pytest.raises(DeadlineExceeded):
            await pipeline.run(video_item(bundle, seed=9), time.monotonic() - 1.0)
    finally:
        await pipeline.stop()
