"""deploy/prometheus and deploy/grafana: promtool accepts the config and rules, the alerts fire on the series
they are meant for, and every query (dashboard, alert, autoscaler) is valid PromQL naming only metrics the
service really exports."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.deploy.conftest import (
    ROOT,
    exported_sample_names,
    load_yaml,
    promql_metric_names,
    run,
    substitute_grafana_variables,
)

PROMETHEUS = ROOT / "deploy/prometheus"
DASHBOARD = json.loads((ROOT / "deploy/grafana/dashboards/fusionserve.json").read_text())
# Prometheus' own series, not the service's
BUILTIN = {"up"}


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return [p for p in found if p["type"] != "row"]


def dashboard_queries() -> list[str]:
    queries = [t["expr"] for p in panels(DASHBOARD) for t in p["targets"]]
    queries += [v["query"]["query"] for v in DASHBOARD["templating"]["list"]]
    return queries


def adapter_query() -> str:
    """prometheus-adapter's metricsQuery with its template filled in the way the adapter does."""
    values = load_yaml(ROOT / "k8s/monitoring/prometheus-adapter-values.yaml")
    (rule,) = values["rules"]["custom"]
    series = rule["seriesQuery"].split("{")[0]
    return (
        rule["metricsQuery"]
        .replace("<<.GroupBy>>", "namespace, pod")
        .replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", 'namespace="fusionserve"')
    )


def check_promql(promtool: str, tmp_path, queries: list[str]) -> None:
    """Let promtool parse the queries, as recording rules (it has no plain "parse this" command)."""
    rules = [{"record": f"check:query_{i}", "expr": q} for i, q in enumerate(queries)]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
    run(promtool, "check", "rules", str(path))


# ------------------------------------------------------------------------------------------- promtool


def test_promtool_accepts_the_prometheus_config(promtool):
    run(promtool, "check", "config", "prometheus.yml", cwd=PROMETHEUS)


def test_promtool_accepts_the_alert_rules(promtool):
    run(promtool, "check", "rules", "alerts.yml", cwd=PROMETHEUS)


def test_alerts_fire_on_the_series_they_are_meant_for(promtool):
    run(promtool, "test", "rules", "alerts_test.yml", cwd=PROMETHEUS)


def test_alert_rules_cover_5xx_latency_and_queue_saturation():
    rules = [r for g in load_yaml(PROMETHEUS / "alerts.yml")["groups"] for r in g["rules"]]
    metrics = {r["alert"]: promql_metric_names(r["expr"]) for r in rules}
    assert "fusionserve_requests_total" in metrics["FusionserveHigh5xxRate"]
    assert "fusionserve_request_duration_seconds_bucket" in metrics["FusionserveHighP99Latency"]
    assert "fusionserve_queue_depth" in metrics["FusionserveQueueSaturated"]
    exported = exported_sample_names() | BUILTIN
    for alert, names in metrics.items():
        assert names and names <= exported, f"{alert}: {names - exported}"


# ------------------------------------------------------------------------------------------- grafana


def test_dashboard_queries_are_valid_promql(promtool, tmp_path):
    queries = [substitute_grafana_variables(q) for q in dashboard_queries() if not q.startswith("label_values")]
    check_promql(promtool, tmp_path, queries)


def test_dashboard_queries_name_only_exported_metrics():
    exported = exported_sample_names()
    for query in dashboard_queries():
        if query.startswith("label_values("):  # label_values(metric, label)
            names = {query[len("label_values(") :].split(",")[0].strip()}
        else:
            names = promql_metric_names(substitute_grafana_variables(query))
        assert names, query
        assert names <= exported, f"{query}: not exported by service/metrics.py: {names - exported}"


def test_dashboard_shows_what_docs_promise():
    used = set().union(*(promql_metric_names(substitute_grafana_variables(q)) for q in dashboard_queries()))
    for metric in (
        "fusionserve_requests_total",  # request rate by status
        "fusionserve_request_duration_seconds_bucket",  # p50/p95/p99
        "fusionserve_batch_size_bucket",  # batch-size distribution per component
        "fusionserve_queue_depth",
        "fusionserve_rejected_total",  # rejections by reason
        "fusionserve_stage_duration_seconds_bucket",  # per stage and per modality
        "fusionserve_model_info",  # provider in use
    ):
        assert metric in used, metric
    exprs = " ".join(dashboard_queries())
    for grouping in ("by (status)", "by (reason)", "by (component)", "by (stage, modality, le)"):
        assert grouping in exprs, grouping
    assert any(p.get("repeat") == "component" for p in panels(DASHBOARD)), "one batch-size panel per component"


def test_dashboard_uses_the_provisioned_datasource():
    (datasource,) = load_yaml(ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")["datasources"]
    for panel in panels(DASHBOARD):
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)), "Grafana needs unique panel ids"


# ----------------------------------------------------------------------------------- autoscaler metric


def test_autoscaler_query_is_valid_and_reads_an_exported_gauge(promtool, tmp_path):
    query = adapter_query()
    check_promql(promtool, tmp_path, [query])
    assert promql_metric_names(query) == {"fusionserve_queue_depth"}
    assert "fusionserve_queue_depth" in exported_sample_names()


@pytest.mark.parametrize(
    "expr, names",
    [
        ('sum by (le) (rate(fusionserve_batch_size_bucket{component=~"a|b"}[5m]))', {"fusionserve_batch_size_bucket"}),
        ("histogram_quantile(0.99, sum by (model, le) (rate(x_bucket[1m]))) > 1", {"x_bucket"}),
        ("a / on (pod) group_left (node) b unless c offset 5m", {"a", "b", "c"}),
        ('up{job="fusionserve"} == 0', {"up"}),
    ],
)
def test_metric_name_extraction(expr, names):
    assert promql_metric_names(expr) == names
