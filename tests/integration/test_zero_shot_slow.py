"""Zero-shot's slower paths through real servers: a video item (the clip's answer and each segment's, from the
embeddings /embed gives) and multi-process mode (the same answer; the label cache in the front-end process)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from service.manifest import SLOTS
from service.zero_shot import ensemble, label_text, normalise, probabilities
from tests.bundles import build_bundle, joint_space_for
from tests.integration.conftest import fast_settings, serving
from tests.integration.test_batching import batch_sizes
from tests.integration.test_zero_shot import (
    LABELS,
    LIMITS,
    TEMPLATE,
    assert_matches,
    expected,
    item,
    zero_shot_path,
)

pytestmark = pytest.mark.slow


async def test_a_video_item_answers_for_the_clip_and_each_segment(tmp_path):
    """The clip's answer from its fused embedding (labels under the text and video templates), its slots' and each
    segment's from the embeddings /embed gives for them."""
    from tests.bundles import sample_video  # PyAV: only the video bundle needs it

    root = tmp_path / "models"
    build_bundle(root, "tiny", "1", modalities=("image", "text", "audio", "video"), joint_space=joint_space_for(8))
    fields = {"video": ("clip.mp4", sample_video(seed=3), "video/mp4"), "text": (None, "two digits")}
    templates = {"video": "a video of {}"}
    async with serving(fast_settings(root)) as (_, client):
        form = [
            *fields.items(),
            *(("labels", (None, label)) for label in LABELS),
            ("template", (None, json.dumps(templates))),  # a form's template by modality: a JSON object
        ]
        response = await client.post(zero_shot_path(), files=form)
        assert response.status_code == 200, response.text
        (result,) = response.json()["results"]
        (embedded,) = (await client.post("/v1/models/tiny/embed", files=fields)).json()["results"]
        rows = {}
        for template in ("{}", "a video of {}"):
            texts = {"inputs": [{"text": label_text(template, label)} for label in LABELS]}
            answer = (await client.post("/v1/models/tiny/embed", json=texts)).json()["results"]
            rows[template] = normalise(np.array([r["text"] for r in answer]))
    assert result["modalities"] == embedded["modalities"] == ["text", "video"]
    against = ensemble([rows["{}"], rows["a video of {}"]])
    by_slot = {"text": rows["{}"], "video_frames": rows["a video of {}"], "video_audio": rows["a video of {}"]}
    clip = {slot: embedded[slot] for slot in SLOTS if embedded.get(slot) is not None}
    assert_matches(result, _want(embedded["fused"], against, clip, by_slot))
    assert len(result["segments"]) == len(embedded["segments"]) > 1
    for got, segment in zip(result["segments"], embedded["segments"], strict=True):
        assert (got["start_s"], got["end_s"], got["modalities"]) == (segment["start_s"], segment["end_s"],
                                                                     segment["modalities"])  # fmt: skip
        slots = {"text": embedded["text"]} | segment["embeddings"]
        assert_matches(got, _want(segment["fused"], against, slots, by_slot))


def _want(fused, against: np.ndarray, slots: dict, by_slot: dict, temperature: float = 0.05) -> dict:
    def scores(vector, rows) -> dict:
        return dict(zip(LABELS, probabilities(np.array([vector]), rows, temperature)[0], strict=True))

    ordered = {slot: slots[slot] for slot in SLOTS if slot in slots}
    return {"scores": scores(fused, against), "slots": {s: scores(v, by_slot[s]) for s, v in ordered.items()}}


def test_multi_process_mode_answers_alike_and_caches_in_the_front_end(tmp_path):
    from tests.integration.multiprocess import Server

    build_bundle(tmp_path / "models", "tiny", "1", joint_space=joint_space_for(8))
    server = Server(tmp_path / "models", tmp_path / "split.log", workers=1, **LIMITS)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            items = [item(1, ("image", "text")), item(2, ("audio",))]
            body = {"inputs": items, "labels": LABELS, "template": TEMPLATE}
            first = client.post(zero_shot_path(), json=body)
            assert first.status_code == 200, first.text
            for result, want in zip(first.json()["results"], expected(client, "tiny", items, LABELS, TEMPLATE, 0.05),
                                    strict=True):  # fmt: skip
                assert_matches(result, want)
            second = client.post(zero_shot_path(), json={**body, "inputs": [item(2, ("audio",))]})
            assert second.status_code == 200, second.text
            assert "text" not in batch_sizes(second.headers["server-timing"])  # the labels came from the cache
            assert second.json()["results"][0] == first.json()["results"][1]
    finally:
        assert server.stop() == 0, server.tail()
