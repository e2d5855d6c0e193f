"""`fusionserve serve` as a real process tree for the multi-process tests: settings as FUSIONSERVE_* variables,
output to a log file (a pipe nobody reads would fill and stall the server), the supervisor's children found by
the roles it logs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.integration.live import free_port

FAST = {"warmup_batch_sizes": "[1]", "intra_op_threads": 1, "providers": "cpu", "max_queue_delay_ms": 2,
        "default_deadline_ms": 20_000, "drain_grace_s": 0.5}  # fmt: skip


class Server:
    """One `python -m service serve` (any FUSIONSERVE_WORKERS), ready on loopback with HTTP and gRPC."""

    def __init__(self, model_dir: Path, log: Path, env: dict | None = None, **settings):
        self.port, self.grpc_port, self.log = free_port(), free_port(), log
        self.url, self.grpc_url = f"http://127.0.0.1:{self.port}", f"127.0.0.1:{self.grpc_port}"
        variables = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONSERVE_")}
        values = {**FAST, **settings, "model_dir": model_dir, "port": self.port, "grpc_port": self.grpc_port}
        variables |= {f"FUSIONSERVE_{k.upper()}": str(v) for k, v in values.items()} | (env or {})
        with open(log, "wb") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "service", "serve"], env=variables,
                                            stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        self.wait_ready()

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"server exited with {self.process.returncode}:\n{self.tail()}"
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"not ready after {timeout_s} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def child_pids(self, role: str) -> list[int]:
        """The pids the supervisor logged as started for `role` ("engine" or "front-end"), newest last."""
        found = re.findall(rf"{role} (\d+) \(pid (\d+)\) started", self.log.read_text(errors="replace"))
        latest = {index: int(pid) for index, pid in found}
        return list(latest.values())

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
