"""The client's import boundary: fusionserve_client needs only httpx and never imports the server, and
`fusionserve classify|embed` loads no server module (the server's verbs import theirs lazily); where the
client is not installed (the serving image) the verbs say what to install."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from service.cli import main
from tests.integration.live import free_port
from tests.unit.test_boundaries import ROOT, imported_modules, sources

# what `pip install fusionserve[client]` does not bring; none of it may load on the client's path
SERVER_ONLY = {
    "fastapi", "starlette", "uvicorn", "onnxruntime", "numpy", "PIL", "pydantic", "pydantic_settings", "soundfile",
    "soxr", "tokenizers", "orjson", "pybase64", "prometheus_client", "grpc", "google", "multipart", "torch",
}  # fmt: skip
RUN_CLI = """
import json, sys
server_only = set(json.loads(sys.stdin.read()))
from service.cli import main
try:
    main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
loaded = [m for m in sys.modules if m.split(".")[0] in server_only
          or (m.startswith("service.") and m != "service.cli")]
print(json.dumps({"code": code, "loaded": sorted(loaded)}))
"""


def run_cli_in_fresh_python(*argv: str) -> tuple[dict, str]:
    """`fusionserve ARGV` in a new interpreter: its exit code and the server-only modules it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_CLI, *argv], input=json.dumps(sorted(SERVER_ONLY)), capture_output=True,
        text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), done.stderr  # the last line: after what the verb printed


@pytest.mark.parametrize("path", sources("fusionserve_client"), ids=lambda p: p.name)
def test_the_client_never_imports_the_server(path):
    bad = [n for n in imported_modules(path) if n.split(".")[0] in ("service", "training")]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", sources("fusionserve_client"), ids=lambda p: p.name)
def test_the_client_imports_only_the_stdlib_and_httpx_up_front(path):
    """Pillow, numpy and soundfile are used only inside the functions that encode such inputs."""
    top_level = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            top_level += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.append(node.module)
    allowed = set(sys.stdlib_module_names) | {"httpx", "fusionserve_client"}
    assert [n for n in top_level if n.split(".")[0] not in allowed] == []


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["classify", "embed"])
def test_the_client_verbs_load_no_server_module(verb):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: the whole path up to the connection runs
    report, stderr = run_cli_in_fresh_python(verb, "tiny", "--text", "hello", "--image", __file__, "--url", url)
    assert report == {"code": 1, "loaded": []}
    assert f"fusionserve: no answer connection_failed: {url}" in stderr


def test_without_the_client_installed_its_verbs_say_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "httpx", None)  # `import httpx` fails, as in the serving image
    for name in [m for m in sys.modules if m.split(".")[0] == "fusionserve_client"]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(SystemExit) as stop:
        main(["classify", "tiny", "--text", "x"])
    assert stop.value.code == 2
    assert "fusionserve classify: httpx is not installed; pip install 'fusionserve[client]'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["check", "--help"])  # the server's verbs are all there
    assert stop.value.code == 0 and "golden" in capsys.readouterr().out
