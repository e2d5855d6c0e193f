"""k8s/kserve: the InferenceService variants render with kustomize, validate against KServe's v1beta1 CRD
schema (vendored subset, k8s/kserve/schema) and, for the pod spec KServe inlines, against the Kubernetes
schemas; and they agree with the code: env vars are real settings, probes hit real open routes on the
port the server listens on, the pod is as hardened as the plain Deployment's."""

from __future__ import annotations

import copy
import json
import os

import httpx
import pytest

from service.frontend.api.middleware import OPEN_PATHS
from service.frontend.app import create_app
from service.settings import ENV_PREFIX, Settings
from tests.deploy.conftest import ROOT, exported_sample_names, load_yaml, one, promql_metric_names, render, run, tool
from tests.deploy.test_kubernetes import KUBERNETES_VERSIONS, config, container, overlay, pod_spec
from tests.deploy.test_monitoring import check_promql

KSERVE = ROOT / "k8s" / "kserve"
SCHEMA = KSERVE / "schema" / "inferenceservice-v1beta1.schema.json"
VARIANTS = ("base", "knative", "knative-grpc")
KNATIVE = ("knative", "knative-grpc")
# Env vars the KServe controller reads from the predictor container (pkg/constants: CustomSpec*EnvVarKey)
KSERVE_ENV = {"PROTOCOL", "STORAGE_URI"}
KSERVE_MODEL_MOUNT = "/mnt/models"  # where STORAGE_URI lands (constants.DefaultModelLocalMountPath)
# PredictorSpec = KServe's own fields + an inlined corev1.PodSpec; these are the former
KSERVE_PREDICTOR_FIELDS = {"minReplicas", "maxReplicas", "autoScaling", "scaleMetric", "scaleMetricType"}
KSERVE_PREDICTOR_FIELDS |= {"scaleTarget", "containerConcurrency", "timeout", "canaryTrafficPercent"}
KSERVE_PREDICTOR_FIELDS |= {"labels", "annotations", "deploymentStrategy", "storageUris", "logger", "batcher"}
# What Knative Serving accepts in a pod spec and a container without feature flags
# (knative/serving pkg/apis/serving/fieldmask.go, PodSpecMask and ContainerMask, v1.23)
KNATIVE_POD_FIELDS = {"serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks"}
KNATIVE_POD_FIELDS |= {"automountServiceAccountToken"}  # only `false`
KNATIVE_CONTAINER_FIELDS = {"name", "args", "command", "env", "workingDir", "envFrom", "image", "imagePullPolicy"}
KNATIVE_CONTAINER_FIELDS |= {"livenessProbe", "ports", "readinessProbe", "resources", "securityContext"}
KNATIVE_CONTAINER_FIELDS |= {"startupProbe", "terminationMessagePath", "terminationMessagePolicy", "volumeMounts"}


def objects(variant: str) -> list[dict]:
    return copy.deepcopy(render(KSERVE / variant))  # the render is cached for the session: tests may edit theirs


def isvc(variant: str) -> dict:
    return one(objects(variant), "InferenceService")


def predictor(variant: str) -> dict:
    return isvc(variant)["spec"]["predictor"]


def server(variant: str) -> dict:
    (c,) = predictor(variant)["containers"]
    assert c["name"] == "kserve-container", "KServe finds the predictor container by this name"
    return c


def env(variant: str) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in server(variant)["env"]}


def settings_from_env(variant: str, monkeypatch) -> Settings:
    """Settings exactly as the pod's process would read them (the optional API key Secret left out)."""
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:  # this shell's, or another variant's
        monkeypatch.delenv(name)
    for name, value in env(variant).items():
        if value is not None:
            monkeypatch.setenv(name, value)
    return Settings()


def ports(variant: str) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in server(variant)["ports"]}


# ----------------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("variant", VARIANTS)
def test_inference_service_matches_the_kserve_crd_schema(variant, tmp_path):
    assert sorted(o["kind"] for o in objects(variant)) == ["InferenceService", "PodMonitor"]
    document = tmp_path / "inferenceservice.json"
    document.write_text(json.dumps(isvc(variant)))
    run(tool("check-jsonschema"), "--schemafile", str(SCHEMA), str(document))


def test_the_vendored_schema_refuses_unknown_fields_and_wrong_types(tmp_path):
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    broken = isvc("base")
    kserve_container = broken["spec"]["predictor"]["containers"][0]
    kserve_container["readinessprobe"] = kserve_container.pop("readinessProbe")  # a typo kubectl would refuse
    broken["spec"]["predictor"]["minReplicas"] = "2"
    errors = {e.json_path: e.message for e in jsonschema.Draft7Validator(schema).iter_errors(broken)}
    assert "'readinessprobe' was unexpected" in errors["$.spec.predictor.containers[0]"]
    assert "is not of type 'integer'" in errors["$.spec.predictor.minReplicas"]


def schema_stubs(value, schema: dict, path: str = "$") -> list[str]:
    """Paths where the manifest sets an object or list that the vendored schema only knows as a stub."""
    if isinstance(value, dict):
        if "properties" not in schema and not isinstance(schema.get("additionalProperties"), dict):
            return [path]
        out = []
        for key, child in value.items():
            sub = schema.get("properties", {}).get(key) or schema.get("additionalProperties")
            out += schema_stubs(child, sub, f"{path}.{key}") if isinstance(sub, dict) else []
        return out
    if isinstance(value, list):
        if "items" not in schema:
            return [path]
        return [p for i, item in enumerate(value) for p in schema_stubs(item, schema["items"], f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_field_we_set_is_checked_in_full_by_the_vendored_schema(variant):
    stubs = schema_stubs(isvc(variant), json.loads(SCHEMA.read_text()))
    assert not [s for s in stubs if not s.startswith("$.metadata")], (
        f"pruned in {SCHEMA.name}; re-run k8s/kserve/schema/derive.py: {stubs}"
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_the_inlined_pod_spec_matches_the_kubernetes_schemas(variant, version):
    import kubernetes_validate

    spec = {key: value for key, value in predictor(variant).items() if key not in KSERVE_PREDICTOR_FIELDS}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fusionserve"}, "spec": spec}
    kubernetes_validate.validate(pod, version, strict=True)


# ----------------------------------------------------------------------------------------- ties to the code


@pytest.mark.parametrize("variant", VARIANTS)
def test_env_is_kserve_protocol_v2_plus_real_settings_with_valid_values(variant, monkeypatch):
    names = set(env(variant))
    assert names - KSERVE_ENV == {n for n in names if n.startswith(ENV_PREFIX)}
    unknown = {n for n in names - KSERVE_ENV if n[len(ENV_PREFIX) :].lower() not in Settings.model_fields}
    assert not unknown, f"not settings of service/settings.py: {unknown}"
    assert env(variant)["PROTOCOL"] == "v2"  # a custom predictor's protocolVersion
    settings = settings_from_env(variant, monkeypatch)
    assert settings.host == "0.0.0.0"
    assert settings.model_dir.as_posix() == KSERVE_MODEL_MOUNT, "STORAGE_URI is mounted or downloaded there"
    assert env(variant)["STORAGE_URI"].split("://")[0] in {"pvc", "s3", "gs", "https", "hdfs", "oci", "hf"}
    assert settings.model_poll_s > 0, "versions added to the storage are picked up without a restart"


def test_ports_follow_kserve_and_knative_rules_and_are_where_the_server_listens(monkeypatch):
    standard = settings_from_env("base", monkeypatch)
    # Standard mode: the first port becomes the Service's :80, a port named h2c gets appProtocol h2c
    assert list(ports("base")) == ["http", "h2c"]
    assert ports("base") == {"http": standard.port, "h2c": standard.grpc_port}
    # Knative routes exactly one port, named http1 or h2c
    assert ports("knative") == {"http1": settings_from_env("knative", monkeypatch).port}
    assert settings_from_env("knative", monkeypatch).grpc_port is None, "an unroutable gRPC listener"
    grpc = settings_from_env("knative-grpc", monkeypatch)
    assert ports("knative-grpc") == {"h2c": grpc.grpc_port}


def probes(variant: str) -> dict[str, dict]:
    c = server(variant)
    return {name: c[name] for name in ("startupProbe", "readinessProbe", "livenessProbe") if name in c}


@pytest.mark.parametrize("variant", VARIANTS)
def test_probes_target_the_v2_health_routes_on_the_server_port(variant, monkeypatch):
    settings = settings_from_env(variant, monkeypatch)
    found = probes(variant)
    assert found["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": settings.port}
    live = found["livenessProbe"]
    assert live.get("httpGet") == {"path": "/v2/health/live", "port": settings.port} or live.get("tcpSocket") == {
        "port": settings.grpc_port
    }
    if "startupProbe" in found:  # load + sha256 + golden replay + warm-up before liveness may kill the pod
        startup = found["startupProbe"]
        assert startup["httpGet"]["path"] == "/v2/health/ready"
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


async def test_probe_paths_are_app_routes_that_answer_without_the_api_key(tmp_path):
    paths = {p["httpGet"]["path"] for v in VARIANTS for p in probes(v).values() if "httpGet" in p}
    assert paths == {"/v2/health/ready", "/v2/health/live"}
    app = create_app(Settings(model_dir=tmp_path, api_key="secret"))
    assert all("get" in app.openapi()["paths"][path] for path in paths)
    assert paths <= set(OPEN_PATHS), "kubelet probes carry no API key"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pod") as client:
        assert (await client.get("/v2/health/live")).status_code == 200
        # no model loaded yet: ready says so, which is what keeps the pod out of the endpoints
        assert (await client.get("/v2/health/ready")).status_code == 503
        assert (await client.get("/v2/models/tiny")).status_code == 401  # the rest stays behind the key


def test_pod_is_hardened_and_sized_like_the_plain_deployment():
    plain, plain_pod = container(overlay("cpu")), pod_spec(overlay("cpu"))
    for variant in VARIANTS:
        c, spec = server(variant), predictor(variant)
        for key in ("securityContext", "resources", "volumeMounts", "imagePullPolicy", "image"):
            assert c[key] == plain[key], (variant, key)
        for key in ("volumes", "automountServiceAccountToken", "enableServiceLinks"):
            assert spec[key] == plain_pod[key], (variant, key)
        # Standard mode is a plain Deployment; Knative refuses these and drains through its queue-proxy
        for where, mine, theirs in (("lifecycle", c, plain), ("securityContext", spec, plain_pod)):
            assert mine.get(where) == (None if variant in KNATIVE else theirs[where]), (variant, where)
        grace = spec.get("terminationGracePeriodSeconds")
        assert grace == (None if variant in KNATIVE else plain_pod["terminationGracePeriodSeconds"])


@pytest.mark.parametrize("variant", KNATIVE)
def test_knative_variants_set_only_fields_knative_accepts(variant):
    spec = {k: v for k, v in predictor(variant).items() if k not in KSERVE_PREDICTOR_FIELDS}
    assert set(spec) <= KNATIVE_POD_FIELDS, set(spec) - KNATIVE_POD_FIELDS
    assert set(server(variant)) <= KNATIVE_CONTAINER_FIELDS, set(server(variant)) - KNATIVE_CONTAINER_FIELDS
    assert server(variant)["securityContext"]["privileged"] is False  # Knative takes only `false` here


def test_settings_match_the_plain_deployment_except_where_models_come_from():
    plain = config(overlay("cpu"))
    for variant in VARIANTS:
        kserve = env(variant)
        assert set(plain) <= set(kserve), f"{variant} lacks {set(plain) - set(kserve)}"
        assert {k: kserve[k] for k in plain} == plain | {ENV_PREFIX + "MODEL_DIR": KSERVE_MODEL_MOUNT}


# ----------------------------------------------------------------------------------------- scaling and scraping


def keda_query() -> str:
    (metric,) = predictor("base")["autoScaling"]["metrics"]
    assert metric["type"] == "External" and metric["external"]["metric"]["backend"] == "prometheus"
    return metric["external"]["metric"]["query"]


def test_standard_mode_scales_on_queue_depth_through_keda(promtool, tmp_path):
    service = isvc("base")
    assert service["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "keda"
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    query = keda_query()
    check_promql(promtool, tmp_path, [query])
    assert promql_metric_names(query) == {"fusionserve_queue_depth"} <= exported_sample_names()
    namespace = load_yaml(KSERVE / "base" / "kustomization.yaml")["namespace"]
    assert f'namespace="{namespace}"' in query and service["metadata"]["namespace"] == namespace
    assert f'pod=~"{service["metadata"]["name"]}-predictor-.*"' in query  # KServe's <isvc>-predictor pods
    threshold = float(predictor("base")["autoScaling"]["metrics"][0]["external"]["target"]["value"])
    assert 0 < threshold < int(env("base")[ENV_PREFIX + "MAX_QUEUED_ITEMS"]) / 4, "scale before 429s"
    assert predictor("base")["minReplicas"] >= 2


@pytest.mark.parametrize("variant", KNATIVE)
def test_knative_mode_scales_on_concurrency_not_keda(variant):
    service, spec = isvc(variant), predictor(variant)
    assert service["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Knative"}
    assert "autoScaling" not in spec and spec["scaleMetric"] == "concurrency"
    assert 0 < spec["scaleTarget"] <= int(env(variant)[ENV_PREFIX + "MAX_BATCH_SIZE"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_podmonitor_scrapes_metrics_of_the_predictor_pods(variant, monkeypatch):
    monitor, service = one(objects(variant), "PodMonitor"), isvc(variant)
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": service["metadata"]["name"]
    }
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    http_port = settings_from_env(variant, monkeypatch).port
    assert ports(variant).get(endpoint.get("port")) == http_port or endpoint.get("targetPort") == http_port
