"""`fusionserve serve` in multi-process mode (docs/architecture.md "Processes"): one supervisor, the engine
processes (one per device: batchers, onnxruntime, fusion; service/engine/server.py) and the front-end
processes (HTTP, gRPC, decoding, preprocessing; service/frontend/process.py), all spawned (no fork of a process
holding threads).

- It binds the HTTP listening socket once and hands it to every front-end (the kernel spreads connections
  over them, as uvicorn's --workers does); the gRPC port is held with SO_REUSEPORT, which the front-ends'
  gRPC servers share. Engines listen on ipc sockets in a private runtime directory.
- Metrics: PROMETHEUS_MULTIPROC_DIR for the children (service/metrics.py); a dead child's live gauges go.
- Supervision: a child that dies (kill -9, a crash) is restarted at once on the same socket or endpoint;
  the front-ends fail the calls a dead engine held with 503 and say not ready until it is back. An engine
  that died while loading a version skips it when restarted (service/engine/loading.py: a native crash in
  onnxruntime does not crash-loop the server). More than
  RESTART_LIMIT deaths within RESTART_WINDOW_S: the supervisor stops everything and exits 1, for the
  orchestrator to restart the pod.
- SIGTERM / SIGINT: the front-ends drain first (each answers what it took in; the engines still run), then
  the engines stop; exit 0.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import time
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path

from service.engine.server import run_engine
from service.frontend.process import run_front_end
from service.metrics import MULTIPROCESS_DIR
from service.settings import Settings
from service.supervisor.processes import ProcessPlan

log = logging.getLogger("fusionserve.supervisor")
RESTART_LIMIT, RESTART_WINDOW_S = 5, 60.0
ENGINE_STOP_S = 30.0  # an engine has nothing in flight once the front-ends are gone
SPAWN = multiprocessing.get_context("spawn")


class Child:
    """One supervised process: what to run, and the process running it now."""

    def __init__(self, role: str, index: int, target, args: tuple):
        self.role, self.index, self.target, self.args = role, index, target, args
        self.process: multiprocessing.process.BaseProcess | None = None
        self.deaths: deque[float] = deque()

    def start(self) -> None:
        self.process = SPAWN.Process(target=self.target, args=self.args, name=f"fusionserve-{self.role}-{self.index}")
        self.process.start()
        log.info("%s started", self)

    def __str__(self) -> str:
        return f"{self.role} {self.index} (pid {self.process.pid if self.process else '-'})"


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host.strip("[]"), port), family=family, backlog=2048)


def hold_shared_port(host: str, port: int) -> socket.socket:
    """Bound, not listening, with SO_REUSEPORT: the port is ours (a server without the option cannot take
    it) and the front-ends' gRPC servers, which set it, share it. Never accepts, so never gets a connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), port))
    return sock


class Supervisor:
    def __init__(self, settings: Settings, overrides: dict, plan: ProcessPlan):
        self.settings, self.overrides, self.plan = settings, overrides, plan
        self.children: list[Child] = []
        self.stopping, self.failed = False, False
        self._wake_read, self._wake_write = os.pipe()

    def run(self) -> int:
        with tempfile.TemporaryDirectory(prefix="fusionserve-") as runtime:
            metrics_dir = Path(os.environ.setdefault(MULTIPROCESS_DIR, f"{runtime}/metrics"))
            metrics_dir.mkdir(parents=True, exist_ok=True)
            for stale in metrics_dir.glob("*.db"):  # a previous run's series are not this one's
                stale.unlink()
            listener = listen(self.settings.host, self.settings.port)
            grpc_hold = None
            if self.settings.grpc_port is not None:
                grpc_hold = hold_shared_port(self.settings.host, self.settings.grpc_port)
            self._build_children(runtime, listener)
            for stop in (signal.SIGTERM, signal.SIGINT):
                signal.signal(stop, self._on_stop)
            log.info("serving on %s:%d with %d front-end(s) and %d engine(s)", self.settings.host,
                     self.settings.port, self.plan.front_ends, self.plan.engines)  # fmt: skip
            for child in self.children:
                child.start()
            self._watch()
            listener.close()  # front-ends stop accepting on their own copies while they drain
            if grpc_hold is not None:
                grpc_hold.close()
            self._stop_all()
        return 1 if self.failed else 0

    def _build_children(self, runtime: str, listener: socket.socket) -> None:
        endpoints = [f"ipc://{runtime}/engine-{i}.sock" for i in range(self.plan.engines)]
        for index, endpoint in enumerate(endpoints):
            device = {"cuda_device_id": index % self.plan.gpus} if self.plan.gpus else {}
            record = Path(runtime) / f"engine-{index}.loading"  # a restarted engine skips what killed this one
            self.children.append(Child("engine", index, run_engine, ({**self.overrides, **device}, endpoint, record)))
        for index in range(self.plan.front_ends):
            args = (self.overrides, listener, endpoints, self.plan.front_ends)
            self.children.append(Child("front-end", index, run_front_end, args))

    def _on_stop(self, signum, frame) -> None:
        self.stopping = True
        os.write(self._wake_write, b"x")

    def _watch(self) -> None:
        """Until a stop signal: restart every child that dies (or give up, see the module docstring)."""
        while not self.stopping:
            by_sentinel = {c.process.sentinel: c for c in self.children}
            ready = wait([*by_sentinel, self._wake_read])
            if self._wake_read in ready:
                os.read(self._wake_read, 64)
            for sentinel in ready:
                if sentinel in by_sentinel and not self.stopping:
                    self._restart(by_sentinel[sentinel])
            if self.failed:
                return

    def _restart(self, child: Child) -> None:
        child.process.join()
        self._forget(child)
        now = time.monotonic()
        child.deaths.append(now)
        while child.deaths and child.deaths[0] < now - RESTART_WINDOW_S:
            child.deaths.popleft()
        if len(child.deaths) > RESTART_LIMIT:
            log.error("%s died %d times in %.0f s: stopping the server", child, len(child.deaths), RESTART_WINDOW_S)
            self.failed = True
            return
        log.error("%s exited with %s: restarting it", child, child.process.exitcode)
        child.start()

    @staticmethod
    def _forget(child: Child) -> None:
        """A dead process's live gauges leave /metrics (prometheus_client's multiprocess mode)."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(child.process.pid)

    def _stop_all(self) -> None:
        """Front-ends drain first (the engines answer what they hold), then the engines stop."""
        front_ends = [c for c in self.children if c.role == "front-end"]
        engines = [c for c in self.children if c.role == "engine"]
        self._stop(front_ends, self.settings.drain_timeout_s + 10)
        self._stop(engines, ENGINE_STOP_S)
        log.info("all processes stopped; bye")

    def _stop(self, children: list[Child], timeout_s: float) -> None:
        for child in children:
            if child.process.is_alive():
                child.process.terminate()  # SIGTERM
        deadline = time.monotonic() + timeout_s
        for child in children:
            child.process.join(max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                log.error("%s did not stop within %.0f s: killing it", child, timeout_s)
                child.process.kill()
                child.process.join()
                self.failed = True
