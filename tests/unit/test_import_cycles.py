"""No import cycle inside a package, counting imports anywhere in a module (function-level ones included):
a cycle hidden in a function body still couples the modules both ways and breaks data flowing one way."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_boundaries import ROOT, imported_modules, sources


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """module → the package's modules it imports (`from a.b import c` names a.b.c when c is a module)."""
    modules = {module_name(p): p for p in sources(package)}
    # `from training import finetune` names both "training" (its __init__ runs too: a real edge) and
    # "training.finetune"
    return {name: {n for n in imported_modules(path) if n in modules and n != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, …, a], or None (iterative DFS with grey/black colouring)."""
    colour, parent = dict.fromkeys(graph, 0), {}
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        colour[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
            elif colour.get(child) == 1:
                path = [node]
                while path[-1] != child:
                    path.append(parent[path[-1]])
                return [*reversed(path), child]
            elif colour.get(child) == 0:
                parent[child], colour[child] = node, 1
                stack.append((child, iter(sorted(graph[child]))))
    return None


@pytest.mark.parametrize("package", ["training", "service", "fusionserve_client"])
def test_no_import_cycles(package):
    cycle = find_cycle(import_graph(package))
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_cycle_finder_sees_function_level_cycles(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import g\n")
    (pkg / "b.py").write_text("def g():\n    from pkg import a\n    return a\n")
    monkeypatch.setattr("tests.unit.test_import_cycles.ROOT", tmp_path)
    monkeypatch.setattr("tests.unit.test_boundaries.ROOT", tmp_path)
    assert find_cycle(import_graph("pkg")) in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.b", "pkg.a", "pkg.b"])
