"""docker-compose.yml: valid against the Compose Specification schema (vendored by check-jsonschema), and
wired the way `docker compose up` needs: files it mounts exist, stages it builds exist, Prometheus scrapes
the services it runs, the server drains before Docker kills it, the GPU reservation only in its profile; every
port published on 127.0.0.1 unless PUBLISH_ADDRESS widens it, and Grafana with no admin/admin."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import subprocess

import jsonschema
import pytest

from service.settings import ENV_PREFIX, Settings
from tests.deploy.conftest import ROOT, load_yaml, run, tool
from tests.deploy.test_dockerfile import BY_NAME

COMPOSE = load_yaml(ROOT / "docker-compose.yml")
SERVICES = COMPOSE["services"]
SERVERS = ("fusionserve", "fusionserve-gpu")


def compose_schema() -> dict:
    schema = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(schema.read_text())


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|s|m|h)", duration))


def test_compose_file_matches_the_compose_specification():
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.yml")


def test_the_schema_check_would_catch_a_typo():
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["fusionserve"]["stop_grace_periode"] = "45s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema())


def test_cpu_server_runs_by_default_and_the_gpu_one_only_in_its_profile():
    cpu, gpu = SERVICES["fusionserve"], SERVICES["fusionserve-gpu"]
    assert "profiles" not in cpu and cpu["build"]["args"]["VARIANT"] == "cpu"
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["args"]["VARIANT"] == "gpu"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "deploy" not in cpu
    assert gpu["environment"][ENV_PREFIX + "PROVIDERS"] == "cuda"
    host_ports = [p["published"] for s in SERVICES.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), "both servers can run at once"


@pytest.mark.parametrize("name", SERVERS)
def test_server_serves_models_from_the_models_folder_read_only(name):
    service = SERVICES[name]
    assert "./models:/models:ro" in service["volumes"]
    assert service["environment"][ENV_PREFIX + "MODEL_DIR"] == "/models"
    assert service["depends_on"]["models-init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", SERVERS)
def test_server_is_hardened_and_drains_before_docker_kills_it(name):
    service = SERVICES[name]
    assert service["read_only"] is True and service["tmpfs"] == ["/tmp"]
    assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"]
    assert not service["user"].startswith("0")
    drain = float(service["environment"][ENV_PREFIX + "DRAIN_TIMEOUT_S"])
    assert seconds(service["stop_grace_period"]) > drain
    settings = {k[len(ENV_PREFIX) :].lower() for k in service["environment"]}
    assert settings <= set(Settings.model_fields)
    # pass-through only: FUSIONSERVE_API_KEY="" would switch authentication on with an empty key
    assert service["environment"][ENV_PREFIX + "API_KEY"] is None


def test_models_init_uses_the_image_build_stage_that_trained_the_bundle():
    init = SERVICES["models-init"]
    assert init["build"]["target"] in BY_NAME
    assert init["build"]["target"] == "bundle-train"


def test_every_bind_mounted_host_path_exists():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and source != "./models":  # ./models is filled by models-init
                assert (ROOT / source).exists(), f"{name}: {source}"


def test_prometheus_scrapes_the_compose_servers_and_loads_the_mounted_rules():
    prometheus = SERVICES["prometheus"]
    config = load_yaml(ROOT / "deploy/prometheus/prometheus.yml")
    (job,) = config["scrape_configs"]
    (dns,) = job["dns_sd_configs"]
    assert set(dns["names"]) == set(SERVERS)
    assert dns["port"] == 8000 == SERVICES["fusionserve"]["ports"][0]["target"]
    mounted = {v.split(":")[1] for v in prometheus["volumes"]}
    config_dir = "/etc/prometheus"
    assert f"{config_dir}/prometheus.yml" in mounted
    for rule_file in config["rule_files"]:
        assert f"{config_dir}/{rule_file}" in mounted


def test_grafana_provisioning_points_at_the_mounted_dashboards_and_prometheus():
    grafana = SERVICES["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    providers = load_yaml(ROOT / "deploy/grafana/provisioning/dashboards/fusionserve.yml")["providers"]
    assert providers[0]["options"]["path"] == mounts["./deploy/grafana/dashboards"]
    (datasource,) = load_yaml(ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(mounts["./deploy/grafana/dashboards"] + "/")
    assert (ROOT / "deploy/grafana/dashboards" / home.rsplit("/", 1)[1]).exists()


def test_prometheus_image_is_the_major_version_promtool_validates(promtool):
    image_major = re.search(r":v(\d+)\.", SERVICES["prometheus"]["image"]).group(1)
    promtool_major = re.search(r"version (\d+)\.", run(promtool, "--version").stdout).group(1)
    assert image_major == promtool_major


def interpolated(value: str, environment: dict[str, str]) -> str:
    """Compose's `${NAME:-default}` interpolation of `value`, for an environment."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: environment.get(m[1]) or m[2], value)


def test_every_port_is_published_on_loopback_unless_publish_address_widens_it():
    published = [(name, port) for name, service in SERVICES.items() for port in service.get("ports", [])]
    assert {name for name, _ in published} == {*SERVERS, "prometheus", "grafana"}
    for name, port in published:
        assert isinstance(port, dict), f"{name}: the short syntax {port!r} publishes on every interface"
        assert interpolated(port["host_ip"], {}) == "127.0.0.1", name
        assert interpolated(port["host_ip"], {"PUBLISH_ADDRESS": "0.0.0.0"}) == "0.0.0.0", name


GRAFANA_ADMIN = load_yaml(ROOT / "docker-compose.grafana-admin.yml")


def test_grafana_has_anonymous_viewers_and_no_admin_account_by_default():
    environment = SERVICES["grafana"]["environment"]
    assert environment["GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION"] == "true"
    assert not [key for key in environment if key.startswith("GF_SECURITY_ADMIN_")]  # no password, no default
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_the_grafana_admin_override_takes_its_password_from_a_secret_file_never_committed():
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.grafana-admin.yml")
    grafana = GRAFANA_ADMIN["services"]["grafana"]
    (secret,) = grafana["secrets"]
    assert grafana["environment"] == {
        "GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION": "false",
        "GF_SECURITY_ADMIN_PASSWORD__FILE": f"/run/secrets/{secret}",  # where Compose mounts it
    }
    source = GRAFANA_ADMIN["secrets"][secret]["file"]
    ignored = subprocess.run(["git", "check-ignore", "-q", source], cwd=ROOT)
    assert source.startswith("./secrets/") and ignored.returncode == 0, f"{source} must be git-ignored"
