"""Every code reference in the docs (docs/*.md, README.md) and in the server's comments names something that exists.

What counts as a reference, so that settings (`FUSIONSERVE_X`), HTTP paths (`/v1/models`) and JSON fields are left
alone:

- **Paths**, anywhere in the text (URLs removed first): a token with a slash whose first part is one of the
  project's folders (`service/frontend/dataplane.py`, `engine/`, `api/door.py`, `bench/results/scale`), or a bare
  file name ending in `.py` (`cycle.py`). A path with a slash resolves against the repository root, then
  `service/`, then `service/frontend/` (so `engine/server.py` and `api/door.py` are fine short forms); it must be a
  file or a folder there (`*` globs), or name a module's attribute (`api/refusals.ERROR_SHAPES`). A bare `name.py`
  must be a file somewhere in `SOURCE_DIRS`. Anything after a `:` (`path:42`) is not part of the path.
- **Qualified names** in backticks or fenced code: `Class.attribute` with a CamelCase class (`Batcher.depth`,
  `DataPlane.serve`): the class must be defined in service/, bundletools/, training/ or fusionserve_client/ and
  one of its definitions must have that attribute (a def, an assignment or an annotated assignment in the class
  body, properties included), unless the class is a third-party one named in `EXTERNAL_CLASSES`.
- **Calls** in backticks or fenced code: a bare `snake_name()` (not `x.name()`, not a decorator) must be a function
  or class defined in those folders, a builtin, or named in `EXTERNAL_CALLS`.
- **Dotted modules** in backticks: `service.manifest`, `training.errors.UserError`: the module must exist and what
  follows it must be defined at its top level.
- **Sections**: `architecture.md "Processes"` (also `docs/x.md, "Title"`), in the docs and in every Python file of
  the code folders, tests/ and bench/: the doc must have a heading, or a bold lead-in (`**Title**`), that contains
  the quoted title (ignoring case).

The server's own comments and docstrings (service/, bundletools/) are held to the path rule: a comment that names
`engine/backend.py` after the file moved misleads whoever reads it.
"""

from __future__ import annotations

import ast
import builtins
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
CODE_DIRS = ("service", "bundletools", "training", "fusionserve_client")
# folders a path may start with (short forms included); anything else with a slash is prose or data
KNOWN_FOLDERS = {
    *CODE_DIRS,
    *("tests", "bench", "scripts", "docs", "deploy", "k8s"),
    *("frontend", "engine", "wire", "supervisor", "preprocess", "modalities", "api", "remote", "inference"),
}
BASES = (ROOT, ROOT / "service", ROOT / "service" / "frontend")
# third-party classes the docs name with an attribute; ours are checked
EXTERNAL_CLASSES = {"AutoTokenizer"}
# third-party functions the docs name as calls
EXTERNAL_CALLS = {"malloc_trim", "get_route_path", "sleep", "renameat2", "should_keep_alive", "avg_over_time"}
# slash-separated names that are not paths: a kubectl resource, the file architecture.md's "Adding a modality"
# has you write (a placeholder such as `service/modalities/<name>.py` needs no entry: `<` ends a path)
NOT_PATHS = {"deploy/fusionserve", "service/modalities/depth.py"}
# where a bare file name is looked for
SOURCE_DIRS = (*CODE_DIRS, "tests", "bench", "scripts", "deploy", "k8s")

URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+")
PATH = re.compile(r"(?<![\w./:<>*-])([A-Za-z_][\w-]*(?:/[\w.*-]+)+/?|[A-Za-z_][\w-]*/)(?![\w/<])")
BARE_PY = re.compile(r"(?<![\w./-])([A-Za-z_][\w*-]*\.py)\b")
CODE_SPAN = re.compile(r"```[^\n]*\n(.*?)```|`([^`\n]+)`", re.S)
QUALIFIED = re.compile(r"(?<![\w.])([A-Z][a-z]\w*)\.([A-Za-z_]\w*)")
CALL = re.compile(r"(?<![\w.@])([a-z_][a-z0-9_]*)\((?!s\))")  # not a decorator, not "http(s)"
SECTION = re.compile(r"\b([\w-]+\.md)[,;:]? \(?\"([^\"\n]+)\"")
DOTTED = re.compile(r"(?<![\w./])((?:service|bundletools|training|fusionserve_client)(?:\.[A-Za-z_]\w*)+)")


def path_exists(token: str) -> bool:
    token = token.rstrip(".,;")
    if token in NOT_PATHS:
        return True
    if "/" not in token:
        return token in file_names()
    head, _, last = token.rpartition("/")
    if "." in last and not last.endswith(".py") and path_exists(f"{head}/{last.split('.')[0]}.py"):
        return True  # `api/refusals.ERROR_SHAPES`: a module's attribute
    for base in BASES:
        if "*" in token:
            if any(base.glob(token.rstrip("/"))):
                return True
        elif (base / token).exists():
            return True
    return False


@cache
def file_names() -> set[str]:
    return {p.name for folder in SOURCE_DIRS for p in (ROOT / folder).rglob("*.py")}


def path_references(text: str) -> list[str]:
    text = URL.sub(" ", text)
    found = [m.group(1) for m in PATH.finditer(text) if m.group(1).split("/")[0] in KNOWN_FOLDERS]
    return found + [m.group(1) for m in BARE_PY.finditer(text)]


def code_of(text: str) -> list[str]:
    return [m.group(1) or m.group(2) for m in CODE_SPAN.finditer(text)]


@cache
def definitions() -> tuple[dict[str, set[str]], set[str]]:
    """Every class (name → attributes, over all its definitions) and every top-level or nested function name."""
    classes: dict[str, set[str]] = {}
    functions: set[str] = set()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    classes.setdefault(node.name, set()).update(class_attributes(node))
                    functions.add(node.name)
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    functions.add(node.name)
    return classes, functions


def class_attributes(node: ast.ClassDef) -> set[str]:
    """Names the class body defines, and the instance attributes its methods assign (`self.x = …`)."""
    names = set()
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(item.name)
            if not isinstance(item, ast.ClassDef):
                names.update(instance_attributes(item))
        elif isinstance(item, ast.Assign):
            names.update(t.id for t in item.targets if isinstance(t, ast.Name))
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names.add(item.target.id)
    return names


def instance_attributes(method: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    targets = []
    for node in ast.walk(method):
        if isinstance(node, ast.Assign):
            targets += node.targets
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets.append(node.target)
    flat = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
    return {
        t.attr for t in flat if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
    }


def qualified_problem(cls: str, attr: str) -> str | None:
    classes, _ = definitions()
    if cls in EXTERNAL_CLASSES:
        return None
    if cls not in classes:
        return f"`{cls}.{attr}`: no class {cls}"
    if attr not in classes[cls]:
        return f"`{cls}.{attr}`: {cls} has no {attr}"
    return None


def dotted_problem(dotted: str) -> str | None:
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        module = ROOT.joinpath(*parts[:n])
        source = module / "__init__.py" if module.is_dir() else module.with_suffix(".py")
        if source.is_file():
            break
    else:
        return f"`{dotted}`: no such module"
    rest = parts[n:]
    if not rest or n == 1:  # `training.run` is a manifest field, not the package
        return None
    tree = ast.parse(source.read_text(encoding="utf-8"))
    top = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            top.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            top.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            top.update(a.asname or a.name for a in node.names)
    if rest[0] not in top:
        return f"`{dotted}`: {'.'.join(parts[:n])} defines no {rest[0]}"
    if len(rest) > 1 and rest[0][0].isupper():
        return qualified_problem(rest[0], rest[1])
    return None


def section_problems(text: str) -> list[str]:
    problems = []
    for name, title in SECTION.findall(text):
        doc = ROOT / name if name == "README.md" else ROOT / "docs" / name
        if not doc.is_file():
            continue  # a path problem, reported as one where it is a path
        heads = re.findall(r"^#+ +(.+)$|\*\*([^*]+)\*\*", doc.read_text(encoding="utf-8"), re.M)
        if not any(title.lower() in (h or b).lower() for h, b in heads):
            problems.append(f'{name} "{title}": no such section')
    return problems


def doc_problems(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    problems = [f"{p}: not a file or folder" for p in path_references(text) if not path_exists(p)]
    problems += section_problems(text)
    _, functions = definitions()
    for code in code_of(text):
        problems += filter(None, (qualified_problem(c, a) for c, a in QUALIFIED.findall(code)))
        problems += [
            f"`{name}()`: not defined"
            for name in CALL.findall(code)
            if name not in functions and name not in EXTERNAL_CALLS and not hasattr(builtins, name)
        ]
        problems += filter(None, (dotted_problem(d) for d in DOTTED.findall(code)))
    return sorted(set(problems))


def comment_texts(path: Path) -> str:
    """The comments and docstrings of one source file, joined."""
    source = path.read_text(encoding="utf-8")
    parts = [line.split("#", 1)[1] for line in source.splitlines() if "#" in line]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            parts.append(ast.get_docstring(node) or "")
    return "\n".join(parts)


def test_docs_name_only_what_exists():
    problems = [f"{doc.relative_to(ROOT)}: {p}" for doc in DOCS for p in doc_problems(doc)]
    assert not problems, "references to nothing:\n" + "\n".join(problems)


def test_server_comments_name_only_paths_that_exist():
    problems = []
    for folder in ("service", "bundletools"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name.endswith("_pb2.py") or path.name.endswith("_pb2_grpc.py"):
                continue
            for ref in path_references(comment_texts(path)):
                if not path_exists(ref):
                    problems.append(f"{path.relative_to(ROOT)}: {ref}")
    assert not problems, "comments naming paths that do not exist:\n" + "\n".join(sorted(set(problems)))


def test_code_names_only_sections_that_exist():
    problems = []
    for folder in (*CODE_DIRS, "tests", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            problems += [f"{path.relative_to(ROOT)}: {p}" for p in section_problems(path.read_text(encoding="utf-8"))]
    assert not problems, "sections that do not exist:\n" + "\n".join(problems)
