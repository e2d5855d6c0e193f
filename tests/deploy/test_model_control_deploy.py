"""Model control in the deployment files: off by default everywhere; turned on, the admin key comes
from a secret (a Compose secret file, a Kubernetes Secret), never a literal, and lands where the server reads it."""

from __future__ import annotations

import subprocess

import pytest

from service import settings as settings_module
from service.settings import ENV_PREFIX, Settings, SettingsError, load_settings
from tests.deploy.conftest import OVERLAYS, ROOT, load_yaml, run, tool
from tests.deploy.test_compose import SERVERS, SERVICES
from tests.deploy.test_kserve import env as kserve_env
from tests.deploy.test_kubernetes import config, container, overlay

ADMIN_KEY = ENV_PREFIX + "ADMIN_KEY"
CONTROL = load_yaml(ROOT / "docker-compose.model-control.yml")


def test_compose_serves_with_model_control_off_and_no_admin_key_in_the_environment():
    for name in SERVERS:
        environment = SERVICES[name]["environment"]
        assert environment.get(ENV_PREFIX + "MODEL_CONTROL", "none") == "none" and ADMIN_KEY not in environment
    assert Settings.model_fields["model_control"].default == "none"


def test_the_model_control_override_matches_the_compose_specification():
    run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.model-control.yml")


def test_the_override_turns_control_on_with_the_admin_key_from_a_secret_file_never_committed():
    assert set(CONTROL["services"]) == set(SERVERS)
    for service in CONTROL["services"].values():
        assert service["environment"] == {ENV_PREFIX + "MODEL_CONTROL": "explicit"}  # no key in the environment
        assert service["secrets"] == ["fusionserve_admin_key"]
    source = CONTROL["secrets"]["fusionserve_admin_key"]["file"]
    assert source.startswith("./secrets/")
    ignored = subprocess.run(["git", "check-ignore", "-q", source], cwd=ROOT)
    assert ignored.returncode == 0, f"{source} must be git-ignored"


def test_the_server_reads_the_compose_secret_as_its_admin_key(tmp_path, monkeypatch):
    # Compose mounts a secret at /run/secrets/<secret name>; the server reads that directory (settings.py)
    assert settings_module.SECRETS_DIR.as_posix() == "/run/secrets"
    monkeypatch.setattr(settings_module, "SECRETS_DIR", tmp_path)
    for key, value in CONTROL["services"]["fusionserve"]["environment"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(ENV_PREFIX + "HOST", "0.0.0.0")  # the image's (Dockerfile)
    with pytest.raises(SettingsError, match=ADMIN_KEY):  # no secret: refuses to start, naming the setting
        load_settings()
    (tmp_path / "fusionserve_admin_key").write_text("k3y\n")  # as `openssl rand -hex 32 >` writes it
    assert load_settings().admin_key.get_secret_value() == "k3y"


def secret_ref(variables: list[dict], name: str) -> dict:
    (variable,) = [v for v in variables if v["name"] == name]
    assert "value" not in variable, f"{name} must come from a Secret, not a literal"
    return variable["valueFrom"]["secretKeyRef"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_kubernetes_takes_the_admin_key_from_its_own_secret_and_keeps_control_off(name):
    objects = overlay(name)
    variables = container(objects)["env"]
    admin, api = secret_ref(variables, ADMIN_KEY), secret_ref(variables, ENV_PREFIX + "API_KEY")
    assert admin == {"name": "fusionserve-admin-key", "key": "admin-key", "optional": True}
    assert admin["name"] != api["name"]  # a credential of its own
    assert config(objects)[ENV_PREFIX + "MODEL_CONTROL"] == "none"


def test_kserve_takes_the_admin_key_from_its_own_secret_and_keeps_control_off():
    inference_service = load_yaml(ROOT / "k8s/kserve/base/inferenceservice.yaml")
    (predictor,) = inference_service["spec"]["predictor"]["containers"]
    assert secret_ref(predictor["env"], ADMIN_KEY)["name"] == "fusionserve-admin-key"
    assert kserve_env("base")[ENV_PREFIX + "MODEL_CONTROL"] == "none"
