"""k8s/: both overlays render with kustomize, validate against pinned Kubernetes schemas, and keep the
safety properties of docs/deploy.md (probes, drain, restricted securityContext, resources, GPU only on gpu)."""

from __future__ import annotations

import os

import pytest

from service.settings import ENV_PREFIX, Settings
from tests.deploy.conftest import OVERLAYS, ROOT, load_yaml, one, render

K8S = ROOT / "k8s"
# The oldest Kubernetes we support and the newest whose schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# Custom resources have no schema in kubernetes-validate; their fields are checked by the tests below.
CUSTOM_KINDS = {"ServiceMonitor"}
BASE_KINDS = {"Namespace", "ConfigMap", "Service", "Deployment", "PodDisruptionBudget", "NetworkPolicy"}
BASE_KINDS |= {"HorizontalPodAutoscaler", "ServiceMonitor"}


def overlay(name: str) -> list[dict]:
    return render(K8S / "overlays" / name)


def with_pvc_component(tmp_path) -> list[dict]:
    """The cpu overlay plus components/models-pvc, the way docs/deploy.md says to add it."""
    rel = os.path.relpath(K8S, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        f"resources:\n  - {rel}/overlays/cpu\ncomponents:\n  - {rel}/components/models-pvc\n"
    )
    return render(tmp_path)


def container(objects: list[dict]) -> dict:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["fusionserve"]
    return containers[0]


def pod_spec(objects: list[dict]) -> dict:
    return one(objects, "Deployment")["spec"]["template"]["spec"]


def config(objects: list[dict]) -> dict[str, str]:
    return one(objects, "ConfigMap")["data"]


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# ----------------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", [*OVERLAYS, "cpu+models-pvc"])
def test_rendered_objects_match_the_kubernetes_schemas(name, version, tmp_path):
    import kubernetes_validate

    objects = with_pvc_component(tmp_path) if name == "cpu+models-pvc" else overlay(name)
    expected = {*BASE_KINDS, "PersistentVolumeClaim"} if "pvc" in name else BASE_KINDS
    assert sorted(o["kind"] for o in objects) == sorted(expected)
    for obj in objects:
        if obj["kind"] not in CUSTOM_KINDS:
            # strict: unknown fields (typos such as `readinessprobe`) are errors, not silently dropped
            kubernetes_validate.validate(obj, version, strict=True)


def test_everything_lands_in_one_namespace_that_enforces_the_restricted_profile():
    for name in OVERLAYS:
        objects = overlay(name)
        namespace = one(objects, "Namespace")
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
            namespace["metadata"]["name"]
        }


# ----------------------------------------------------------------------------------------- pod safety


@pytest.mark.parametrize("name", OVERLAYS)
def test_probes_use_readyz_for_startup_and_readiness_and_healthz_for_liveness(name):
    c = container(overlay(name))
    port_names = {p["name"] for p in c["ports"]}
    for probe, path in (("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert c[probe]["httpGet"]["path"] == path, probe
        assert c[probe]["httpGet"]["port"] in port_names, probe
    # startup must allow for load + sha256 + golden replay + warm-up before liveness may kill the pod
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


@pytest.mark.parametrize("name", OVERLAYS)
def test_grace_period_outlasts_prestop_sleep_plus_drain(name):
    objects = overlay(name)
    command = container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    drain = float(config(objects)[ENV_PREFIX + "DRAIN_TIMEOUT_S"])
    assert pre_stop >= 5, "endpoint removal needs a few seconds to reach every proxy"
    assert pod_spec(objects)["terminationGracePeriodSeconds"] > pre_stop + drain


@pytest.mark.parametrize("name", OVERLAYS)
def test_security_context_is_restricted(name):
    objects = overlay(name)
    pod, c = pod_spec(objects), container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    # the read-only root needs exactly one writable place: an emptyDir at /tmp
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]]


@pytest.mark.parametrize("name", OVERLAYS)
def test_resources_are_set_and_cpu_threads_match_the_cpu_limit(name):
    objects = overlay(name)
    resources = container(objects)["resources"]
    for key in ("cpu", "memory"):
        assert key in resources["requests"] and key in resources["limits"], key
    threads = int(config(objects).get(ENV_PREFIX + "INTRA_OP_THREADS", "0"))
    assert 0 < threads <= int(resources["limits"]["cpu"]), "onnxruntime would size its pool to the node"


def test_gpu_limit_image_and_placement_only_in_the_gpu_overlay():
    cpu, gpu = overlay("cpu"), overlay("gpu")
    gpu_res = container(gpu)["resources"]
    assert gpu_res["limits"]["nvidia.com/gpu"] == 1
    assert gpu_res["requests"]["nvidia.com/gpu"] == 1
    assert container(gpu)["image"].endswith("-gpu")
    assert pod_spec(gpu)["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod_spec(gpu)["tolerations"])
    assert config(gpu)[ENV_PREFIX + "PROVIDERS"] == "cuda"

    assert "nvidia.com/gpu" not in str(cpu)
    assert not container(cpu)["image"].endswith("-gpu")
    assert config(cpu)[ENV_PREFIX + "PROVIDERS"] == "cpu"
    for objects in (cpu, gpu):
        assert container(objects)["image"] != "fusionserve", "overlays must name a pullable image"


@pytest.mark.parametrize("name", OVERLAYS)
def test_configmap_holds_only_real_settings_with_valid_values(name):
    data = config(overlay(name))
    assert all(key.startswith(ENV_PREFIX) for key in data)
    fields = {key[len(ENV_PREFIX) :].lower(): value for key, value in data.items()}
    unknown = set(fields) - set(Settings.model_fields)
    assert not unknown, f"not settings of service/settings.py: {unknown}"
    settings = Settings(**fields)  # values parse (a bad one would stop the pod at start)
    assert settings.host == "0.0.0.0"  # reachable from the Service, not only loopback
    port = next(p["containerPort"] for p in container(overlay(name))["ports"] if p["name"] == "http")
    assert settings.port == port


@pytest.mark.parametrize("name", OVERLAYS)
def test_rollout_never_drops_below_the_current_capacity(name):
    deployment = one(overlay(name), "Deployment")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


# ----------------------------------------------------------------------------------------- wiring


@pytest.mark.parametrize("name", OVERLAYS)
def test_service_pdb_and_networkpolicy_select_the_pods(name):
    objects = overlay(name)
    deployment = one(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], labels)
    assert selects(one(objects, "Service")["spec"]["selector"], labels)
    assert selects(one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    assert selects(one(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"], labels)
    service_port = one(objects, "Service")["spec"]["ports"][0]
    assert service_port["targetPort"] in {p["name"] for p in container(objects)["ports"]}


@pytest.mark.parametrize("name", OVERLAYS)
def test_networkpolicy_admits_only_the_gateway_and_prometheus(name):
    policy = one(overlay(name), "NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"} and policy["egress"] == []
    peers = [peer for rule in policy["ingress"] for peer in rule["from"]]
    assert len(peers) == 2
    gateway, prometheus = peers
    assert gateway == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}}
    assert prometheus["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    # kustomize's labels must not have rewritten the peer into selecting fusionserve itself
    assert prometheus["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    for rule in policy["ingress"]:
        assert [p["port"] for p in rule["ports"]] == ["http"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_servicemonitor_scrapes_the_service_metrics_port(name):
    objects = overlay(name)
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("name", OVERLAYS)
def test_hpa_scales_the_deployment_on_the_adapter_queue_metric(name):
    objects = overlay(name)
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(objects, "Deployment")["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2, "one pod left during a rollout or drain is no redundancy"
    (metric,) = hpa["spec"]["metrics"]
    adapter = load_yaml(K8S / "monitoring" / "prometheus-adapter-values.yaml")
    served = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] in served
    # below the queue bound, or 429s start before the autoscaler reacts
    bound = int(config(objects)[ENV_PREFIX + "MAX_QUEUED_ITEMS"])
    assert 0 < float(metric["pods"]["target"]["averageValue"]) < bound / 4


def test_pvc_component_mounts_models_read_only(tmp_path):
    objects = with_pvc_component(tmp_path)
    c, pod = container(objects), pod_spec(objects)
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/models")
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["persistentVolumeClaim"]["claimName"] == one(objects, "PersistentVolumeClaim")["metadata"]["name"]
    assert config(objects)[ENV_PREFIX + "MODEL_DIR"] == "/models"
