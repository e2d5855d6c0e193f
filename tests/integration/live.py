"""Real servers on loopback for end-to-end tests: `fusionserve serve` as a process, or uvicorn in a thread."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from service.frontend.app import create_app
from service.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_ready(base_url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited early with {process.returncode}: {process.stderr.read()}")
        try:
            if httpx.get(base_url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} not ready after {timeout}s")


def start_process(model_dir: Path, **settings) -> tuple[subprocess.Popen, str]:
    """`python -m service serve` with FUSIONSERVE_* settings; returns (process, base_url) once ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONSERVE_")}
    env.update({f"FUSIONSERVE_{k.upper()}": str(v) for k, v in settings.items()})
    env.update(FUSIONSERVE_MODEL_DIR=str(model_dir), FUSIONSERVE_PORT=str(port), FUSIONSERVE_PROVIDERS="cpu")
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve"], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_until_ready(base_url, process=process)
    return process, base_url


class ThreadedServer:
    """uvicorn in a background thread, so a test can reach into the app (gates, metrics); `root_path` as
    `uvicorn --root-path` (behind a proxy that strips that prefix)."""

    def __init__(self, settings: Settings, root_path: str = ""):
        self.app = create_app(settings.model_copy(update={"port": free_port()}))
        self.port = self.app.state.context.settings.port
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", root_path=root_path)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        wait_until_ready(self.base_url)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
