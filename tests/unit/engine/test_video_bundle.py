"""A video bundle as the engine loads it: the pooling graph equals its numpy reference whatever the padding of
a batch, warm-up runs a video (one black, silent segment of the bundle's length), and the registry loads,
warms and serves a video bundle with a batcher for its pooling."""

from __future__ import annotations

import time

import numpy as np
import pytest

from service.engine.local import LocalBackend
from service.engine.pipeline import Pipeline, run_direct
from service.engine.warmup import warmup_batches
from service.manifest import MODALITIES
from service.metrics import Metrics
from service.settings import Settings
from tests.bundle_reference import _pool, _weights
from tests.bundles import VIDEO_SPEC, build_bundle
from tests.unit.engine.video_items import video_bundle, video_item


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return video_bundle(tmp_path_factory.mktemp("models"))


def test_the_pool_matches_its_reference_under_garbage_padding(bundle):
    """frame_mask alone excludes padded frames: large finite values there change nothing."""
    rng = np.random.default_rng(0)
    stacks = [rng.normal(0, 1, (k, 8)).astype(np.float32) for k in (1, 3, 4)]  # [K_i,D]
    pool = bundle.encoders["video"]
    feeds = pool.feeds(stacks)
    assert feeds["frame_embeddings"].shape == (3, 4, 8) and feeds["frame_mask"].sum(axis=1).tolist() == [1, 3, 4]
    feeds["frame_embeddings"][feeds["frame_mask"] == 0] = 1e3
    batched = pool.model.run(feeds)[0]  # [B,D]
    weights = _weights(bundle.directory / bundle.manifest.encoders.video.file)
    expected = [_pool(weights, stack.astype(np.float64)) for stack in stacks]
    np.testing.assert_allclose(batched, expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(pool([stacks[0]])[0], batched[0], atol=1e-6, rtol=0)  # alone = in a padded batch


def test_warm_up_runs_a_video_of_one_segment(bundle):
    batches = warmup_batches(bundle, Settings(warmup_batch_sizes=[1, 2], warmup_largest_batch=True))
    with_video = [batch for batch in batches if "video" in batch[0].arrays]
    assert with_video and all(len(batch[0].arrays["video"].bounds) == 1 for batch in with_video)
    for batch in batches:
        for result in run_direct(bundle.encoders, bundle.fusion, batch):
            if "video" in result.modalities:
                assert len(result.segments) == 1 and result.segments.slots(0) == ["video_frames", "video_audio"]
                assert float(result.segments.bounds[0, 1]) == VIDEO_SPEC.segment_s


async def test_the_registry_loads_warms_and_serves_a_video_bundle(tmp_path):
    build_bundle(tmp_path, "vid", "1", modalities=MODALITIES, golden=False)
    metrics = Metrics()
    backend = LocalBackend(Settings(model_dir=tmp_path, warmup_largest_batch=True), metrics)
    await backend.start()
    try:
        await backend.loader
        state = backend.models.get("vid", "1")
        assert state.status == "ready" and set(state.pipeline.batchers) == {*MODALITIES, "fusion"}
        items = [video_item(state.bundle, seed=1), video_item(state.bundle, seed=2, frames=(1, 3), sound=(False, True))]
        served = await backend.run("vid", "1", items, time.monotonic() + 30)
        for got, expected in zip(served, run_direct(state.bundle.encoders, state.bundle.fusion, items), strict=True):
            np.testing.assert_allclose(got.segments.probabilities, expected.segments.probabilities, atol=1e-6)
            np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=1e-6)
        # the pool ran as a batcher of its own: the two videos' five segments
        pooled = metrics.registry.get_sample_value("fusionserve_batch_size_sum", {"model": "vid", "component": "video"})
        assert pooled == 5
    finally:
        await backend.stop()


class Recording:
    """An encoder component that records the size of every call it gets."""

    def __init__(self, encoder):
        self.encoder, self.modality, self.spec, self.sizes = encoder, encoder.modality, encoder.spec, []

    def __call__(self, payloads: list) -> list:
        self.sizes.append(len(payloads))
        return self.encoder(payloads)


def test_the_direct_path_of_a_pipeline_runs_in_its_batchers_batches(bundle):
    """Warm-up's video batches reach each encoder in batches its batcher could form, not all frames at once."""
    encoders = {**bundle.encoders, "image": Recording(bundle.encoders["image"])}
    settings = Settings(max_batch_size=4)
    pipeline = Pipeline("vid", encoders, bundle.fusion, settings, Metrics())
    items = [video_item(bundle, seed=seed, frames=(3, 2)) for seed in range(2)]  # ten frames, four fusion rows
    cut = pipeline.run_direct(items)
    assert encoders["image"].sizes == [4, 4, 2]
    for got, whole in zip(cut, run_direct(bundle.encoders, bundle.fusion, items), strict=True):
        np.testing.assert_allclose(got.segments.fused, whole.segments.fused, atol=1e-6, rtol=0)
        np.testing.assert_allclose(got.probabilities, whole.probabilities, atol=1e-6, rtol=0)
