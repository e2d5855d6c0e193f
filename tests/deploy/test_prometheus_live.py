"""The real thing on loopback: `fusionserve serve` on a tiny bundle, and a real Prometheus (Debian's
package) running deploy/prometheus's config and alert rules, scraping it every second. After some traffic,
the service's counters and batch-size histogram come back through Prometheus' HTTP API: proof that
/metrics is scrapeable and that the names the dashboards and alerts query are the names that arrive."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.bundles import build_bundle
from tests.deploy.conftest import ROOT, tool

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout} s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def server_address() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def server(tmp_path, server_address, prometheus) -> Iterator[str]:
    """Started after Prometheus: its discovery hands targets to the scraper only every 5 s, which then
    overlaps the server's start-up instead of adding to it."""
    build_bundle(tmp_path / "models", "tiny", "1")
    port = int(server_address.rsplit(":", 1)[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONSERVE_")}
    env.update(
        FUSIONSERVE_MODEL_DIR=str(tmp_path / "models"),
        FUSIONSERVE_HOST="127.0.0.1",
        FUSIONSERVE_PORT=str(port),
        FUSIONSERVE_PROVIDERS="cpu",
        FUSIONSERVE_INTRA_OP_THREADS="1",
        FUSIONSERVE_WARMUP_BATCH_SIZES="[1]",
        FUSIONSERVE_LOG_LEVEL="warning",
    )
    entry_point = Path(sys.executable).parent / "fusionserve"  # the console script the image runs
    process = subprocess.Popen(
        [str(entry_point), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz", process)
        yield server_address
    finally:
        stop(process)


@pytest.fixture
def prometheus(tmp_path, server_address) -> Iterator[str]:
    binary = tool("prometheus")
    # the compose config, with the DNS discovery swapped for the loopback server and a 1 s interval
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    (job,) = config["scrape_configs"]
    del job["dns_sd_configs"], job["relabel_configs"]
    job["static_configs"] = [{"targets": [server_address], "labels": {"service": "fusionserve"}}]
    shutil.copy(ROOT / "deploy/prometheus/alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/-/ready", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def query(prometheus: str, promql: str) -> list[dict]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def poll(prometheus: str, promql: str, ok, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        result = query(prometheus, promql)
        if ok(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.25)


def test_prometheus_scrapes_requests_and_batch_sizes(server, prometheus):
    requests = 6
    with httpx.Client(base_url=f"http://{server}", timeout=10) as client:
        for _ in range(requests):
            answer = client.post("/v1/models/tiny/classify", files={"text": (None, "one two")})
            assert answer.status_code == 200, answer.text

    counted = poll(
        prometheus,
        'sum(fusionserve_requests_total{model="tiny",endpoint="classify",status="200"})',
        lambda r: r and float(r[0]["value"][1]) >= requests,
    )
    assert counted and float(counted[0]["value"][1]) == requests

    buckets = poll(
        prometheus,
        'fusionserve_batch_size_bucket{model="tiny",component="text"}',
        lambda r: any(s["metric"]["le"] == "+Inf" and float(s["value"][1]) > 0 for s in r),
    )
    le = {s["metric"]["le"]: float(s["value"][1]) for s in buckets}
    assert le.get("+Inf", 0) > 0, buckets
    assert le["+Inf"] >= le["1.0"], "cumulative buckets"

    targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"]
    # the alert rules shipped for compose load in the real Prometheus, too
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    alerts = {r["name"] for g in groups for r in g["rules"]}
    assert {"FusionserveHigh5xxRate", "FusionserveHighP99Latency", "FusionserveQueueSaturated"} <= alerts
