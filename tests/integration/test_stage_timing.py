"""Each second of compute is recorded once in fusionserve_stage_duration_seconds: an item with one modality is
fused inside its encoder's worker call, and that fusion counts as fusion's infer time, not also the encoder's."""

from __future__ import annotations

import time

from tests.integration.conftest import fast_settings, form, metric, serving
from tests.integration.test_live_reload import TEXT

FUSION_S = 0.5  # what the slowed fusion takes per call: far above the tiny text encoder's few ms


def infer_sum(app, modality: str) -> float:
    return metric(app, "fusionserve_stage_duration_seconds_sum", model="tiny", stage="infer", modality=modality)


async def test_inline_fusion_time_is_counted_once_as_fusion(tiny_models):
    async with serving(fast_settings(tiny_models)) as (app, client):
        fusion = app.state.context.registry.get("tiny").pipeline.fusion.model
        original = fusion.run

        def slow_fusion(feeds):
            time.sleep(FUSION_S)  # a slow fusion graph, stood in for: the compute being timed
            return original(feeds)

        fusion.run = slow_fusion
        text_before, fusion_before = infer_sum(app, "text"), infer_sum(app, "fusion")
        response = await client.post("/v1/models/tiny/classify", **form(text=TEXT))
        assert response.status_code == 200
        text_s, fusion_s = infer_sum(app, "text") - text_before, infer_sum(app, "fusion") - fusion_before
        request_s = metric(app, "fusionserve_request_duration_seconds_sum", model="tiny", endpoint="classify")
        assert fusion_s >= FUSION_S
        assert text_s < FUSION_S / 2, f"the text encoder's infer time includes the fusion: {text_s:.3f} s"
        assert text_s + fusion_s <= request_s, (text_s, fusion_s, request_s)  # nothing counted twice
        timing = dict(part.split(";dur=") for part in response.headers["server-timing"].split(", ") if ";dur=" in part)
        assert float(timing["infer"]) >= FUSION_S * 1000  # the client's view: encoder + fusion, as before
