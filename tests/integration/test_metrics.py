"""The README's Metrics table: every metric exported with its labels, and counts that match the traffic sent."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.bundles import sample_inputs
from tests.integration.conftest import form, metric

EXPECTED = {
    "fusionserve_requests": {"model", "endpoint", "status"},
    "fusionserve_request_duration_seconds": {"model", "endpoint"},
    "fusionserve_stage_duration_seconds": {"model", "stage", "modality"},
    "fusionserve_batch_size": {"model", "component"},
    "fusionserve_batch_padding_ratio": {"model", "component"},
    "fusionserve_queue_depth": {"model", "component"},
    "fusionserve_rejected": {"model", "reason"},
    "fusionserve_inflight_requests": set(),
    "fusionserve_model_info": {"model", "version", "provider"},
    "fusionserve_model_load_seconds": {"model", "version"},
}


async def test_metrics_names_labels_and_counts(app_client):
    app, client = app_client
    inputs = sample_inputs(4)
    files = {
        "image": ("a.png", inputs["image"], "image/png"),
        "audio": ("a.wav", inputs["audio"], "audio/wav"),
    }
    for _ in range(3):
        assert (await client.post("/v1/models/tiny/classify", files=files, data={"text": "one"})).status_code == 200
    assert (await client.post("/v1/models/tiny/embed", **form(text="two"))).status_code == 200
    assert (await client.post("/v1/models/tiny/embed", **form(text=""))).status_code == 422
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name, labels in EXPECTED.items():
        assert name in families, name
        samples = families[name].samples
        assert samples, f"{name} has no samples"
        assert {k for s in samples for k in s.labels if k not in ("le",)} == labels, name

    def value(name, **labels):
        return metric(app, name, **labels)

    assert value("fusionserve_requests_total", model="tiny", endpoint="classify", status="200") == 3
    assert value("fusionserve_requests_total", model="tiny", endpoint="embed", status="200") == 1
    assert value("fusionserve_requests_total", model="tiny", endpoint="embed", status="422") == 1
    assert value("fusionserve_rejected_total", model="tiny", reason="invalid") == 1
    assert value("fusionserve_request_duration_seconds_count", model="tiny", endpoint="classify") == 3
    assert value("fusionserve_batch_size_sum", model="tiny", component="text") == 4
    assert value("fusionserve_batch_size_sum", model="tiny", component="image") == 3
    assert value("fusionserve_batch_size_sum", model="tiny", component="fusion") == 4
    assert value("fusionserve_stage_duration_seconds_count", model="tiny", stage="infer", modality="audio") == 3
    assert value("fusionserve_stage_duration_seconds_count", model="tiny", stage="queue", modality="text") == 4
    assert (
        value(
            "fusionserve_stage_duration_seconds_count",
            model="tiny",
            stage="decode",
            modality="image+text+audio",
        )
        == 3
    )
    assert value("fusionserve_inflight_requests") == 0
    assert value("fusionserve_queue_depth", model="tiny", component="text") == 0
