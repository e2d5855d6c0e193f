"""Video in multi-process mode (two front-ends and an engine, `fusionserve serve` as a process tree): every
protocol answers a clip's segments with the numbers one process answers (the decoded VideoArrays and the
SegmentResults cross the wire), and the front-ends' video metrics reach the one /metrics page."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.bundles import build_bundle, sample_video
from tests.integration.multiprocess import Server
from tests.integration.video_server import MODEL, READER_IDS, READERS, Segments

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root, logs = tmp_path_factory.mktemp("video-models"), tmp_path_factory.mktemp("logs")
    build_bundle(root, MODEL, "1", modalities=("image", "text", "audio", "video"), golden=False)
    one = Server(root, logs / "one.log", workers=0)
    try:
        split = Server(root, logs / "split.log", workers=2,
                       env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("metrics"))})  # fmt: skip
    except BaseException:
        one.stop()
        raise
    for server in (one, split):
        server.base_url = server.url  # what the readers of video_server.py call it
    yield one, split
    assert split.stop() == 0, split.tail()
    assert one.stop() == 0, one.tail()


@pytest.mark.parametrize("reader", READERS, ids=READER_IDS)
def test_every_protocol_answers_as_one_process(servers, reader):
    clip = sample_video(seed=7, seconds=2.5)
    one, split = (reader(server, clip, segment_s=1.0, overlap_s=0.5) for server in servers)
    assert isinstance(one, Segments) and isinstance(split, Segments), (one, split)
    assert len(one.bounds) == 4 and np.allclose(split.bounds, one.bounds)
    assert np.allclose(split.fused, one.fused, atol=1e-5) and np.allclose(split.clip_fused, one.clip_fused, atol=1e-5)


def test_the_video_metrics_of_every_front_end_are_on_one_page(servers):
    _, split = servers
    clip = sample_video(seed=8, seconds=2.5)
    for _ in range(6):  # a connection each: the kernel spreads them over both front-ends
        files = {"video": ("clip.mp4", clip, "video/mp4")}
        assert httpx.post(f"{split.url}/v1/models/{MODEL}/embed", files=files, timeout=60).status_code == 200
    values = {}
    for family in text_string_to_metric_families(httpx.get(split.url + "/metrics", timeout=30).text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    seconds = values[("fusionserve_video_seconds_total", (("model", MODEL),))]
    assert seconds >= 6 * 2.4  # the six above, whichever front-end decoded them (and the protocols' tests')
    kept = values[("fusionserve_video_frames_total", (("kind", "kept"), ("model", MODEL)))]
    assert 0 < kept <= values[("fusionserve_video_frames_total", (("kind", "decoded"), ("model", MODEL)))]
