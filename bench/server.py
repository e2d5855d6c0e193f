"""The real server as a separate process (`python -m service serve`), on a free 127.0.0.1 port.

A separate process is the honest setup: the load generator's event loop and GIL are not the server's,
as in production. Both still share the machine's cores; the bench reports each side's CPU seconds so a
reader can see how much of the machine the client took.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def settings_env(overrides: dict) -> dict[str, str]:
    """Settings overrides as FUSIONSERVE_* variables (lists and dicts as JSON, as pydantic-settings reads them)."""
    env = {}
    for key, value in overrides.items():
        text = json.dumps(value) if isinstance(value, list | dict) else str(value)
        env[f"FUSIONSERVE_{key.upper()}"] = text
    return env


SERVER_TREE = "BENCH_SERVER_TREE"


class ServerProcess:
    def __init__(self, overrides: dict, log_path: Path):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = log_path
        env = {**os.environ, **settings_env({**overrides, "host": HOST, "port": self.port})}
        command = [sys.executable, "-m", "service", "serve"]  # every setting travels as FUSIONSERVE_* variables
        self.started = time.perf_counter()
        # BENCH_SERVER_TREE: another checkout's server, for before/after figures in one run (`-m` resolves `service`
        # from the working directory first); the load generator and the report stay this checkout's
        tree = os.environ.get(SERVER_TREE)
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tree or None)
        self.ready_s: float | None = None

    def wait_ready(self) -> None:
        """Poll /readyz (200 once every model is loaded, verified and warm); fail fast if the process dies."""
        deadline = self.started + READY_TIMEOUT_S
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    raise SystemExit(f"bench: server exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        self.ready_s = time.perf_counter() - self.started
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"bench: server not ready after {READY_TIMEOUT_S:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def pids(self) -> list[int]:
        """The server process and all its live descendants (front-ends and engines in the workers mode)."""
        return process_tree(self.process.pid)

    def cpu_seconds(self) -> float | None:
        """user + system CPU time of the server's process tree, all threads (Linux /proc; None elsewhere).

        Children that already exited are not counted (their time reaches the parent's cutime only once reaped,
        and a supervisor's children live as long as it does), so a window's delta is of live processes only.
        """
        return tree_cpu_seconds(self.process.pid)

    def memory_mb(self) -> dict:
        """Current and peak resident set size of the server's process tree (Linux /proc), summed over the
        processes: for several processes the peak is the sum of each one's peak, an upper bound."""
        values: dict[str, float] = {}
        for pid in self.pids():
            for key, megabytes in process_memory_mb(pid).items():
                values[key] = round(values.get(key, 0.0) + megabytes, 1)
        return values

    def stop(self) -> None:
        """SIGTERM (the server drains), then SIGKILL if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ServerProcess:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def process_tree(root: int) -> list[int]:
    """`root` and its live descendants, parents first: /proc/<pid>/task/*/children, recursively (Linux)."""
    pids, index = [root], 0
    while index < len(pids):
        pids.extend(pid for pid in children(pids[index]) if pid not in pids)
        index += 1
    return pids


def children(pid: int) -> list[int]:
    found = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):  # the thread or the process is gone
            found.extend(int(child) for child in path.read_text().split())
    return found


def cpu_seconds_of(pid: int) -> float | None:
    """utime + stime of one process, all its threads; None when it is gone (or not on Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds of `root` and its live descendants; None when `root` itself cannot be read."""
    own = cpu_seconds_of(root)
    if own is None:
        return None
    return own + sum(cpu_seconds_of(pid) or 0.0 for pid in process_tree(root)[1:])


def process_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of one process in MB ({} when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    values = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[{"VmRSS": "rss_mb", "VmHWM": "peak_rss_mb"}[key]] = round(int(rest.split()[0]) / 1024, 1)
    return values
