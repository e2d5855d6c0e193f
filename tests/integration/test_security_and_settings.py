"""API key (docs/bad-input.md rows 19 and 22) and start-up validation of settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.settings import Settings, SettingsError, load_settings
from tests.integration.conftest import fast_settings, form, serving


async def test_api_key_required_except_probes_and_metrics(tiny_models):
    async with serving(fast_settings(tiny_models, api_key="s3cret")) as (_, client):
        url = "/v1/models/tiny/classify"
        missing = await client.post(url, **form(text="one"))
        assert missing.status_code == 401 and missing.json()["error"]["field"] == "authorization"
        wrong = await client.post(url, **form(text="one"), headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        bearer = await client.post(url, **form(text="one"), headers={"authorization": "Bearer s3cret"})
        header = await client.post(url, **form(text="one"), headers={"x-api-key": "s3cret"})
        assert bearer.status_code == header.status_code == 200
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200, path


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("FUSIONSERVE_MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("FUSIONSERVE_COMPONENT_MAX_BATCH_SIZE", '{"audio": 4}')
    settings = Settings()
    assert settings.batch_size_for("audio") == 4 and settings.batch_size_for("text") == 16


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FUSIONSERVE_MAX_BATCH_SIZE", "0"),
        ("FUSIONSERVE_PROVIDERS", "tpu"),
        ("FUSIONSERVE_COMPONENT_MAX_BATCH_SIZE", '{"depth": 2}'),
        ("FUSIONSERVE_MAX_QUEUE_DELAY_MS", "-1"),
    ],
)
def test_bad_setting_names_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert variable in str(raised.value)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"FUSIONSERVE_PORT": "99999"}, "FUSIONSERVE_PORT"),
        # model control on a reachable address without its own credential (tests/integration/test_model_control.py)
        ({"FUSIONSERVE_MODEL_CONTROL": "explicit", "FUSIONSERVE_HOST": "0.0.0.0"}, "FUSIONSERVE_ADMIN_KEY"),
        # a server locked with an API key is no keyless development box, even on loopback
        ({"FUSIONSERVE_MODEL_CONTROL": "explicit", "FUSIONSERVE_API_KEY": "k"}, "FUSIONSERVE_ADMIN_KEY: Value error"),
        ({"FUSIONSERVE_URL_ALLOW_HOSTS": '["ftp://images.example"]'}, "only http:// or https:// hosts can be allowed"),
    ],
    ids=["bad-port", "control-without-admin-key", "control-with-api-key-without-admin-key", "bad-allow-entry"],
)
def test_cli_refuses_to_start_with_a_bad_setting(tmp_path, settings, named):
    env = {**settings, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--model-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert named in result.stderr


def test_blank_api_key_means_no_key(monkeypatch):
    monkeypatch.setenv("FUSIONSERVE_API_KEY", "  ")
    assert Settings().api_key is None
