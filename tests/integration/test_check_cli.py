"""`fusionserve check BUNDLE`: the server's loader and golden replay as a command (the trainer's export gate)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from service.cli import main
from service.manifest import read_manifest
from tests.integration.test_registry import _golden_mismatch, _tamper


def check(bundle, capsys, *flags: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stop:
        main(["check", str(bundle), *flags])
    return stop.value.code, capsys.readouterr().out


def test_a_good_bundle_passes_and_reports_the_server_outputs(tiny_models, capsys):
    bundle = tiny_models / "tiny" / "1"
    code, out = check(bundle, capsys, "--json")
    report = json.loads(out)
    manifest = read_manifest(bundle / "manifest.json")
    assert code == 0 and report["ok"] and report["provider"] == "CPUExecutionProvider"
    assert report["golden_max_error"] <= manifest.golden_tolerance
    assert len(report["outputs"]) == len(manifest.golden)
    for golden, got in zip(manifest.golden, report["outputs"], strict=True):
        np.testing.assert_allclose(got["probabilities"], golden.outputs.probabilities, atol=manifest.golden_tolerance)
        assert sorted(got["embeddings"]) == sorted(golden.outputs.embeddings)
        assert sorted(got["modality_probabilities"]) == sorted(golden.outputs.modality_probabilities)
        for modality, probabilities in golden.outputs.modality_probabilities.items():
            np.testing.assert_allclose(got["modality_probabilities"][modality], probabilities, atol=1e-5)


def test_human_readable_line(tiny_models, capsys):
    code, out = check(tiny_models / "tiny" / "1", capsys)
    assert code == 0 and out.startswith("ok: ") and "golden max error" in out


def test_golden_mismatch_fails_but_still_reports_outputs(models_copy, capsys):
    bundle = models_copy / "tiny" / "1"
    _golden_mismatch(bundle)
    code, out = check(bundle, capsys, "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"] and "differ from the reference" in report["reason"]
    assert report["golden_max_error"] == pytest.approx(0.01, abs=1e-3) and report["outputs"]


def test_a_bundle_that_cannot_load_names_the_reason(models_copy, capsys):
    bundle = models_copy / "tiny" / "1"
    _tamper(bundle)
    code, out = check(bundle, capsys)
    assert code == 1 and out.startswith("FAILED: ") and "sha256 mismatch" in out


def test_runs_as_python_dash_m_service(tiny_models):
    """The form the trainer uses: a separate process, JSON on the last stdout line."""
    done = subprocess.run(
        [sys.executable, "-m", "service", "check", str(tiny_models / "tiny" / "1"), "--json"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["ok"] is True


def test_a_bundle_without_golden_examples_loads_and_reports_none(tmp_path, capsys):
    from tests.bundles import build_bundle

    code, out = check(build_bundle(tmp_path, "plain", "1", golden=False), capsys, "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["outputs"] == [] and report["golden_max_error"] == 0.0
