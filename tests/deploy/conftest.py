"""Shared helpers for the deploy checks: repository paths, the offline tools, PromQL metric names.

No Docker engine or cluster runs here, so the artefacts are checked with the real tools that can run
offline: kubectl's kustomize, kubernetes-validate's schemas, hadolint, the Compose schema, promtool and
Prometheus itself. A missing tool skips its tests on a dev box, but fails them in CI (CI=true): there,
`make test` installs every tool, and a skip would hide an unvalidated artefact.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "`pip install -e '.[dev]'` and `make deploy-tools` (both run by `make test`)"


def tool(name: str) -> str:
    """Path of an executable: the venv's bin first (PyPI-shipped binaries), then PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed: {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a tool and fail the test with its output when it exits non-zero."""
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# ---------------------------------------------------------------------------------------------- kustomize

OVERLAYS = ("cpu", "gpu")
_rendered: dict[str, list[dict]] = {}


def render(directory: Path) -> list[dict]:
    """`kubectl kustomize DIR` → the objects it renders (cached per directory for the session)."""
    key = str(directory)
    if key not in _rendered:
        out = run(tool("kubectl"), "kustomize", str(directory)).stdout
        _rendered[key] = [doc for doc in yaml.safe_load_all(out) if doc]
    return _rendered[key]


def one(objects: list[dict], kind: str) -> dict:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


# ------------------------------------------------------------------------------------------------ PromQL

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_PROMQL_WORDS = _KEYWORDS | {"and", "or", "unless", "inf", "nan", "atan2"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (identifiers that are not functions, keywords or labels)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|`[^`]*`', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.groups()
        if not call and name.lower() not in _PROMQL_WORDS:
            names.add(name)
    return names


def exported_sample_names() -> set[str]:
    """Every sample name the service's registry exposes (a Counter `x` is scraped as `x_total`, etc.)."""
    from service.metrics import Metrics

    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
        "summary": ("", "_sum", "_count", "_created"),
    }
    names = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def substitute_grafana_variables(expr: str) -> str:
    """Grafana's variables → values Prometheus accepts, so promtool can parse the query."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


@pytest.fixture
def promtool() -> str:
    return tool("promtool")
