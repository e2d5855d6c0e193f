"""Start, probe and stop one peer server in its own venv; its requests in its own protocol.

Each peer runs as `$BENCH_VENVS/<peer>/bin/python bench/peers/<peer>_peer.py` in a new session, so stopping
it (SIGTERM, then SIGKILL, to that process group only) also ends the workers it spawned (LitServe's
inference process, PyTriton's tritonserver); CPU and RSS are summed over the whole group.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.server import HOST, free_port

HERE = Path(__file__).resolve().parent
DEFAULT_VENVS = Path(os.environ.get("BENCH_VENVS", "/work/bench-venvs"))
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class PeerSpec:
    name: str
    script: str
    ready_paths: tuple[str, ...]  # all must answer 200; "{model}" is the bundle's name
    style: str  # "v1": fusionserve's JSON {"inputs": [...]}; "kserve": KServe v2 JSON (Triton)
    packages: tuple[str, ...]  # whose versions the results record
    needs_libpython: bool = False  # PyTriton's Python-backend stub links libpython3.x.so


TRITON_READY = ("/v2/health/ready", "/v2/models/{model}_text/ready", "/v2/models/{model}_image/ready")
PEERS = {
    "fastapi": PeerSpec("fastapi", "fastapi_peer.py", ("/health",), "v1", ("fastapi", "uvicorn", "pydantic")),
    "litserve": PeerSpec("litserve", "litserve_peer.py", ("/health",), "v1", ("litserve", "fastapi", "uvicorn")),
    "pytriton": PeerSpec("pytriton", "pytriton_peer.py", TRITON_READY, "kserve", ("nvidia-pytriton",), True),
}
COMMON_PACKAGES = ("onnxruntime", "tokenizers", "pillow", "numpy")


def request_for(style: str, model: str, modality: str, value: bytes | str) -> tuple[str, bytes]:
    """(path, JSON body) of one single-item classify request; images travel base64 in every protocol."""
    data = base64.b64encode(value).decode() if isinstance(value, bytes) else value
    if style == "kserve":
        body = {"inputs": [{"name": modality, "shape": [1, 1], "datatype": "BYTES", "data": [data]}]}
        return f"/v2/models/{model}_{modality}/infer", json.dumps(body).encode()
    return "/v1/classify", json.dumps({"inputs": [{modality: data}]}).encode()


def top1(style: str, answer: dict, labels: list[str]) -> tuple[str, float]:
    """The best label and its probability, from a v1 classify answer or a KServe v2 one."""
    if style == "kserve":
        data = answer["outputs"][0]["data"]
        best = max(range(len(data)), key=data.__getitem__)
        return labels[best], float(data[best])
    label = answer["results"][0]["labels"][0]
    return label["label"], float(label["score"])


def venv_python(venvs: Path, peer: str) -> Path:
    return venvs / peer / "bin" / "python"


def installed_versions(python: Path, packages: tuple[str, ...]) -> dict[str, str]:
    code = "import importlib.metadata as m, json, sys; print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    out = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "version probe failed")
    return json.loads(out.stdout)


def libdir(python: Path) -> str:
    code = "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    pids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    return pids


class PeerProcess:
    """A peer server on a free 127.0.0.1 port; the same interface as bench.server.ServerProcess."""

    def __init__(self, spec: PeerSpec, venvs: Path, bundle_dir: Path, threads: int, log_path: Path):
        self.spec, self.port, self.log_path = spec, free_port(), log_path
        self.ready_paths = [path.format(model=bundle_dir.parent.name) for path in spec.ready_paths]
        self.url = f"http://{HOST}:{self.port}"
        python = venv_python(venvs, spec.name)
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("PYTHONPATH", None)
        if spec.needs_libpython:
            env["LD_LIBRARY_PATH"] = ":".join(filter(None, [libdir(python), env.get("LD_LIBRARY_PATH")]))
        command = [str(python), spec.script, "--bundle", str(bundle_dir), "--host", HOST, "--port", str(self.port)]
        command += ["--threads", str(threads)]
        self.started = time.perf_counter()
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.ready_s: float | None = None

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self) -> None:
        deadline = self.started + READY_TIMEOUT_S
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.spec.name} exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if all(client.get(self.url + path).status_code == 200 for path in self.ready_paths):
                        self.ready_s = time.perf_counter() - self.started
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"{self.spec.name} not ready after {READY_TIMEOUT_S:.0f}s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float | None:
        total = 0.0
        for pid in group_pids(self.process.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError, ValueError):
                continue
        return total

    def memory_mb(self) -> dict:
        total = 0
        for pid in group_pids(self.process.pid):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return {"rss_mb": round(total / 1024, 1), "processes": len(group_pids(self.process.pid))}

    def stop(self) -> None:
        """SIGTERM to the peer's process group, then SIGKILL to what is left of it."""
        for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
            if not group_pids(self.process.pid) and self.process.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            deadline = time.perf_counter() + wait_s
            while time.perf_counter() < deadline and (self.process.poll() is None or group_pids(self.process.pid)):
                time.sleep(0.1)

    def __enter__(self) -> PeerProcess:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
