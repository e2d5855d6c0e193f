"""The import rules of docs/architecture.md, checked on the source: the server never imports torch or training/, and the
trainer uses only service.manifest and service.preprocess (so serving internals can change freely)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# the bundle schema, preprocessing (train and serve decode alike), publishing, the plain item types it returns, and
# the joint space's numpy maths (the export's ranges, encodings and zero-shot fit are the server's own)
TRAINING_MAY_USE = (
    "service.manifest", "service.preprocess", "service.publish", "service.items",
    "service.joint_space", "service.embedding_types", "service.zero_shot",
)  # fmt: skip


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", sources("service"), ids=lambda p: str(p.relative_to(ROOT)))
def test_service_never_imports_torch_or_training(path):
    bad = [n for n in imported_modules(path) if n.split(".")[0] in ("torch", "training", "transformers")]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", sources("training"), ids=lambda p: str(p.relative_to(ROOT)))
def test_training_uses_only_manifest_and_preprocess_of_service(path):
    used = [n for n in imported_modules(path) if n.split(".")[0] == "service"]
    # `from service import manifest` yields "service" and "service.manifest": judge the dotted names only
    bad = [n for n in used if n != "service" and not n.startswith(TRAINING_MAY_USE)]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
