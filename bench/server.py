"""The real server as a separate process (`python -m service serve`), on a free 127.0.0.1 port.

A separate process is the honest setup: the load generator's event loop and GIL are not the server's,
as in production. Both still share the machine's cores; the bench reports each side's CPU seconds so a
reader can see how much of the machine the client took.
"""

from __future__ import annotations

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


class ServerProcess:
    def __init__(self, overrides: dict, log_path: Path):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = log_path
        env = {**os.environ, **settings_env({**overrides, "host": HOST, "port": self.port})}
        command = [sys.executable, "-m", "service", "serve"]  # every setting travels as FUSIONSERVE_* variables
        self.started = time.perf_counter()
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
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

    def cpu_seconds(self) -> float | None:
        """user + system CPU time of the server process, all threads (Linux /proc; None elsewhere)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_mb(self) -> dict:
        """Current and peak resident set size of the server process (Linux /proc)."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return {}
        values = {}
        for line in status.splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[{"VmRSS": "rss_mb", "VmHWM": "peak_rss_mb"}[key]] = round(int(rest.split()[0]) / 1024, 1)
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
