"""docker-compose.tracing.yml: valid against the Compose Specification schema (as the other compose files), an
overlay of docker-compose.yml's servers that points them at the Jaeger it runs over OTLP, the UI published on
127.0.0.1 unless PUBLISH_ADDRESS widens it."""

from __future__ import annotations

from tests.deploy.conftest import ROOT, load_yaml, run, tool

BASE = load_yaml(ROOT / "docker-compose.yml")["services"]
TRACING = load_yaml(ROOT / "docker-compose.tracing.yml")["services"]


def test_overlay_matches_the_compose_specification():
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.tracing.yml")


def test_every_server_exports_to_the_jaeger_it_runs():
    servers = [name for name in TRACING if name != "jaeger"]
    assert servers and set(servers) <= set(BASE)
    assert TRACING["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    for name in servers:
        env = TRACING[name]["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4317"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
        assert "jaeger" in TRACING[name]["depends_on"]


def test_only_the_ui_is_published_on_loopback_by_default():
    (port,) = TRACING["jaeger"]["ports"]
    assert port["target"] == 16686 and port["host_ip"] == "${PUBLISH_ADDRESS:-127.0.0.1}"
