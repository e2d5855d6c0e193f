"""An engine process (service/engine/server.py) and a front-end's client (client.py), multi-process mode's two halves:
prepared items sent over ZeroMQ come back as the in-process pipeline's answers, the engine's errors arrive as
the same FusionError (404, 504 past the deadline), the engine serves on after a caller cancels, and SIGTERM
ends it cleanly (exit 0)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, multiprocess

from service.engine.bundle import load_bundle
from service.engine.pipeline import run_direct
from service.errors import FusionError
from service.frontend.remote.client import EngineClient
from service.items import RawItem
from service.preprocess.prepare import prepare_item
from tests.bundles import sample_inputs
from tests.integration.conftest import fast_settings


@pytest.fixture
def engine(tiny_models, tmp_path):
    """An engine process with batches of one item, writing its metrics to tmp_path/metrics."""
    endpoint = f"ipc://{tmp_path}/engine.sock"
    (tmp_path / "metrics").mkdir()
    env = {**os.environ, "FUSIONSERVE_MODEL_DIR": str(tiny_models), "FUSIONSERVE_WARMUP_BATCH_SIZES": "[1]",
           "FUSIONSERVE_INTRA_OP_THREADS": "1", "FUSIONSERVE_PROVIDERS": "cpu", "FUSIONSERVE_MAX_BATCH_SIZE": "1",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "service.engine.server", endpoint], env=env)
    yield endpoint, process
    if process.poll() is None:
        process.kill()
        process.wait(10)


def prepared(tiny_models):
    settings = fast_settings(tiny_models)
    bundle = load_bundle(tiny_models / "tiny" / "1", settings)
    items = [prepare_item(RawItem(**sample_inputs(seed)), bundle.manifest, bundle.tokenizer, settings)
             for seed in (1, 2, 3)]  # fmt: skip
    return items, run_direct(bundle.encoders, bundle.fusion, items)


async def ready(client: EngineClient, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not await client.ping(timeout_s=1.0):
        assert time.monotonic() < deadline, "the engine never became ready"
        await asyncio.sleep(0.1)


@pytest.fixture
async def client(engine):
    """A started client of the engine, once the engine says it is ready."""
    connection = EngineClient(engine[0])
    connection.start()
    try:
        await ready(connection)
        yield connection
    finally:
        await connection.close()


async def test_items_come_back_as_the_in_process_pipeline_answers(client, tiny_models):
    items, expected = prepared(tiny_models)
    results = await client.infer("tiny", None, items, time.monotonic() + 10)
    for got, want in zip(results, expected, strict=True):
        assert got.modalities == want.modalities
        np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-6)
        np.testing.assert_allclose(got.fused, want.fused, atol=1e-6)
        assert got.batches and all(b.size >= 1 for b in got.batches.values())
    with pytest.raises(FusionError) as missing:
        await client.infer("nothing", None, items[:1], time.monotonic() + 10)
    assert missing.value.status == 404 and "nothing" in missing.value.message
    with pytest.raises(FusionError) as late:
        await client.infer("tiny", None, items[:1], time.monotonic() - 1)  # already past its deadline
    assert late.value.status == 504


def items_computed(metrics_dir) -> float:
    """How many items the engine's text batches ran (the sum of their sizes), read from its metrics files."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))
    return registry.get_sample_value("fusionserve_batch_size_sum", {"model": "tiny", "component": "text"}) or 0.0


async def test_a_cancelled_call_never_computes(engine, client, tiny_models, tmp_path):
    settings = fast_settings(tiny_models)
    bundle = load_bundle(tiny_models / "tiny" / "1", settings)
    text = [prepare_item(RawItem(text=f"item number {i}"), bundle.manifest, bundle.tokenizer, settings)
            for i in range(46)]  # fmt: skip
    before = items_computed(tmp_path / "metrics")
    first = asyncio.create_task(client.infer("tiny", None, text[:40], time.monotonic() + 30))
    second = asyncio.create_task(client.infer("tiny", None, text[40:45], time.monotonic() + 30))
    while len(client.waiting) < 2:  # both sent; the second's five items queue behind the first's forty
        await asyncio.sleep(0)  # no poll interval: the cancel must leave before the forty are computed
    second.cancel()
    assert len(await first) == 40
    with pytest.raises(asyncio.CancelledError):
        await second
    # one more item, queued after the cancel: the queue is first in, first out and a batch's sizes are
    # recorded before it is answered, so once it is back anything of the second call would have been counted
    assert len(await client.infer("tiny", None, text[45:], time.monotonic() + 30)) == 1
    assert items_computed(tmp_path / "metrics") - before == 40 + 1


async def test_the_engine_serves_on_after_a_cancelled_call_and_sigterm_ends_it(engine, client, tiny_models):
    items, _ = prepared(tiny_models)
    call = asyncio.create_task(client.infer("tiny", None, items * 10, time.monotonic() + 10))
    while not client.waiting:  # the call is out: the engine has work of it to drop
        await asyncio.sleep(0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    results = await client.infer("tiny", None, items[:1], time.monotonic() + 10)  # still serving
    assert len(results) == 1
    process = engine[1]
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
