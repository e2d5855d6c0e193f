"""The process fence of docs/architecture.md "Import rules", checked on the source with the AST (every import
statement, at any depth, not a substring search) and on a real front-end: a front-end process never imports
onnxruntime, the protocols see only protocol-neutral types, the wire and the shared modules belong to no process."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENGINE_SIDE = ("onnxruntime", "onnx", "service.engine")
# the composition root: a one-process server builds its LocalBackend here, the only front-end import of the engine
COMPOSITION_ROOT = ("service/frontend/context.py", "service.engine.local")


def imports(path: Path) -> list[tuple[str, int]]:
    """(module, line) of every import in the file, relative imports resolved against its package."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found += [(base, node.lineno)] + [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def reaches(module: str, fenced: tuple[str, ...]) -> bool:
    return any(module == f or module.startswith(f + ".") for f in fenced)


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def shared_modules() -> list[Path]:
    """Modules every process imports: service/*.py but the CLI (the entry point), preprocess, modalities, wire."""
    top = [p for p in (ROOT / "service").glob("*.py") if p.name not in ("cli.py", "__main__.py")]
    return sorted(top) + sources("service/preprocess", "service/wire") + sources("service/modalities")


def bad_imports(path: Path, fenced: tuple[str, ...]) -> list[str]:
    relative = path.relative_to(ROOT).as_posix()
    allowed = COMPOSITION_ROOT[1] if relative == COMPOSITION_ROOT[0] else None
    return [f"{relative}:{line} imports {module}" for module, line in imports(path)
            if reaches(module, fenced) and not (allowed and reaches(module, (allowed,)))]  # fmt: skip


@pytest.mark.parametrize("path", sources("service/frontend"), ids=lambda p: str(p.relative_to(ROOT)))
def test_front_end_code_never_imports_the_engine_or_onnxruntime(path):
    assert not bad_imports(path, ENGINE_SIDE)


@pytest.mark.parametrize("path", sources("service/frontend/api"), ids=lambda p: str(p.relative_to(ROOT)))
def test_protocols_see_only_the_data_plane_and_neutral_types(path):
    assert not bad_imports(path, (*ENGINE_SIDE, "service.frontend.remote", "service.wire"))


@pytest.mark.parametrize("path", shared_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shared_modules_belong_to_no_process(path):
    assert not bad_imports(path, (*ENGINE_SIDE, "service.frontend", "service.supervisor"))


@pytest.mark.parametrize("path", sources("service/engine"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_engine_never_imports_front_end_code(path):
    assert not bad_imports(path, ("service.frontend", "service.supervisor", "bundletools"))


def test_the_fence_sees_imports_inside_functions_and_relative_ones(tmp_path):
    module = ROOT / "service" / "frontend" / "_fence_probe.py"
    module.write_text("def f():\n    import onnxruntime\n\nfrom ..engine import registry\n")
    try:
        found = [m for m, _ in imports(module)]
        assert "onnxruntime" in found and "service.engine.registry" in found
        assert len(bad_imports(module, ENGINE_SIDE)) == 3  # onnxruntime, service.engine, service.engine.registry
    finally:
        module.unlink()


def test_a_multi_process_front_end_imports_no_onnxruntime():
    """Built as the supervisor builds a front-end (engines given), with every protocol's module imported."""
    probe = (
        "import sys\n"
        "from service.frontend.app import create_app\n"
        "from service.settings import Settings\n"
        "app = create_app(Settings(grpc_port=None), engines=['ipc:///tmp/fusionserve-fence-probe'], front_ends=1)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnxruntime', 'onnx')"
        " or m.startswith('service.engine')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
