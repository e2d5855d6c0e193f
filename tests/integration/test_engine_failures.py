"""Every engine failure answers (multi-process mode; one process: test_failures_answer.py): an onnxruntime
error in the engine is a 500 naming the request id of the engine's log line for every caller, whose load goes
down again; a malformed message is answered (with an id) or dropped (without) and the engine serves on; a
front-end whose engine never answers gives 504 within the deadline plus REPLY_MARGIN_S and cancels the call.
An engine that dies while loading a version skips it when the supervisor restarts it. docs/bad-input.md rows
36, 38 and 39."""

from __future__ import annotations

import asyncio
import contextvars
import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import orjson
import pytest
import zmq
import zmq.asyncio
from prometheus_client import CollectorRegistry, multiprocess

from service.engine.bundle import load_bundle
from service.engine.loading import CRASHED
from service.errors import REQUEST_ID, FusionError
from service.frontend.app import create_app
from service.frontend.remote.client import REPLY_MARGIN_S, EngineClient
from service.items import RawItem
from service.manifest import manifest_digest, read_manifest
from service.preprocess.prepare import prepare_item
from tests.integration.conftest import fast_settings
from tests.integration.multiprocess import Server
from tests.integration.test_engine_process import ready
from tests.integration.test_failures_answer import FAILING_TEXT, tiny_and_failing
from tests.waiting import wait_until, wait_until_async


@pytest.fixture(scope="module")
def models(tiny_models, tmp_path_factory):
    return tiny_and_failing(tiny_models, tmp_path_factory.mktemp("engine-failing") / "models")


@pytest.fixture
def engine(models, tmp_path):
    """An engine process on tiny and boom, its log in tmp_path/engine.log, its metrics in tmp_path/metrics."""
    endpoint, log = f"ipc://{tmp_path}/engine.sock", tmp_path / "engine.log"
    (tmp_path / "metrics").mkdir()
    env = {**os.environ, "FUSIONSERVE_MODEL_DIR": str(models), "FUSIONSERVE_WARMUP_BATCH_SIZES": "[1]",
           "FUSIONSERVE_INTRA_OP_THREADS": "1", "FUSIONSERVE_PROVIDERS": "cpu",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "service.engine.server", endpoint], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    yield endpoint, process, log
    process.kill()
    process.wait(10)


@pytest.fixture
async def clients(engine):
    """Two front-ends' connections (two identities), once the engine is ready."""
    connections = [EngineClient(engine[0]), EngineClient(engine[0])]
    for connection in connections:
        connection.start()
    try:
        await ready(connections[0])
        yield connections
    finally:
        for connection in connections:
            await connection.close()


def engine_errors(metrics_dir, kind: str) -> float:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))
    return registry.get_sample_value("fusionserve_internal_errors_total", {"where": "engine", "kind": kind}) or 0.0


def texts(models, *values: str) -> list:
    settings = fast_settings(models)
    bundle = load_bundle(models / "boom" / "1", settings)
    return [prepare_item(RawItem(text=v), bundle.manifest, bundle.tokenizer, settings) for v in values]


async def infer_as(client: EngineClient, request_id: str, items: list):
    """One call carrying `request_id` as a front-end's request would (its own context, as its own task)."""
    context = contextvars.copy_context()
    context.run(REQUEST_ID.set, request_id)
    call = asyncio.get_running_loop().create_task(client.infer("boom", None, items, time.monotonic() + 20),
                                                  context=context)  # fmt: skip
    try:
        return await call
    except FusionError as error:
        return error


async def test_an_onnxruntime_error_in_the_engine_answers_every_caller_500_with_its_request_id(
    engine, clients, models, tmp_path
):
    first, other = clients
    failing = texts(models, FAILING_TEXT)
    started = time.monotonic()
    # 16: whichever two whole seconds they fall in, at least 8 in one, enough to count as a drain rate if failures did
    answers = await asyncio.gather(*(infer_as(first, f"engine-{i}", failing) for i in range(16)))
    answered_s = time.monotonic() - started
    for i, answer in enumerate(answers):
        assert isinstance(answer, FusionError) and answer.status == 500, answer
        assert f"request id engine-{i}" in answer.message and answer.headers["X-Request-Id"] == f"engine-{i}"
        assert "Gather" not in answer.message  # the exception's text stays in the engine's log
    assert answered_s < 10, answered_s  # answered, not left to a deadline (20 s)
    log = engine[2].read_text(errors="replace")
    for i in range(16):  # the engine's log line names the same id, with onnxruntime's error after it
        assert f"request id engine-{i}: model boom: unexpected error in the engine" in log
    assert "INVALID_ARGUMENT" in log and engine_errors(tmp_path / "metrics", "unexpected") == 16
    assert len(await first.infer("boom", None, texts(models, "cat dog"), time.monotonic() + 20)) == 1  # served on
    answered_in = int(time.monotonic())  # one clock for every process (CLOCK_MONOTONIC)
    # the drain rate counts whole seconds gone by: the second the failures fell in must be over
    await wait_until_async(lambda: int(time.monotonic()) > answered_in + 1, 5, "the failures' second to pass")
    status = await other.status(timeout_s=5)  # the other front-end sees none of them still in the engine, and
    # no drain rate: failed calls never count as capacity (the one served call alone is too few to measure)
    assert [row for row in status["load"] if row[0] == "boom"] == [["boom", "1", 0, None]]
    assert first.outstanding == 0


async def test_a_malformed_message_is_answered_or_dropped_and_the_engine_serves_on(engine, clients, tmp_path):
    context = zmq.asyncio.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.connect(engine[0])
    unreadable = {"id": 8, "model": "tiny", "timeout_s": 5.0, "items": []}
    arrays = {"op": "calls", "calls": [unreadable], "arrays": [["<f4", [4], 1, 0]]}
    sent = [
        [b"not json"],  # dropped: nothing to answer to
        [b"[1, 2]"],  # dropped: not an object
        [orjson.dumps({"op": "ping"})],  # dropped: no id
        [orjson.dumps({"op": "calls", "calls": [{"id": 7}], "arrays": []})],  # answered: no model, no deadline
        [orjson.dumps(arrays)],  # answered: its header names an array in a frame that did not come
        [orjson.dumps({"id": 9, "op": "launch"})],  # answered: unknown op
        [orjson.dumps({"op": "ping", "id": 10})],  # the engine still answers
    ]
    try:
        for frames in sent:
            await dealer.send_multipart(frames)
        replies = {}
        while len(replies) < 4:  # 7, 8, 9 and the ping; had the engine died, the poll's bound would show it
            assert await dealer.poll(20_000), f"the engine stopped answering; replies so far: {replies}"
            reply = orjson.loads((await dealer.recv_multipart())[0])
            for answer in reply.get("replies", [reply]):  # a call's answer comes in a `replies` message
                replies[answer["id"]] = answer
    finally:
        dealer.close(linger=0)
        context.term()
    assert sorted(replies) == [7, 8, 9, 10] and replies[10]["ok"] and replies[10]["ready"]
    for request_id, reason in ((7, "no valid 'model'"), (8, "frames it does not have"), (9, "unknown op 'launch'")):
        error = replies[request_id]["error"]
        assert not replies[request_id]["ok"] and error["status"] == 500 and reason in error["message"], error
    assert engine[1].poll() is None and engine_errors(tmp_path / "metrics", "malformed") == 6
    assert await clients[0].ping(timeout_s=5) is True


async def silent_engine(endpoint: str, view: dict, seen: list) -> None:
    """A ROUTER that answers pings (the front-end follows it and serves) and reads every other message without
    ever answering it: an engine stuck in a call (a hung device, a lost message)."""
    context = zmq.asyncio.Context()
    router = context.socket(zmq.ROUTER)
    router.bind(endpoint)
    try:
        while True:
            identity, header, *_arrays = await router.recv_multipart()
            message = orjson.loads(header)
            if message["op"] == "ping":
                answer = {"id": message["id"], "ok": True, "ready": True, "models": view, "load": []}
                await router.send_multipart([identity, orjson.dumps(answer)])
            else:
                seen.append((time.monotonic(), message))
    finally:
        router.close(linger=0)
        context.term()


async def test_a_front_end_whose_engine_never_answers_gives_504_within_the_deadline_plus_margin(tiny_models, tmp_path):
    digest = manifest_digest(read_manifest(tiny_models / "tiny" / "1" / "manifest.json"))
    fields = {"status": "ready", "reason": None, "load_seconds": 0.1, "golden_max_error": 0.0, "provider": "CPU",
              "manifest_sha256": digest}  # fmt: skip
    view = {"loading_done": True, "unloaded": [], "models": {"tiny": {"required": True, "versions": {"1": fields}}}}
    endpoint, seen = f"ipc://{tmp_path}/silent.sock", []
    engine = asyncio.create_task(silent_engine(endpoint, view, seen))
    app = create_app(fast_settings(tiny_models), engines=[endpoint])
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://front-end", timeout=30) as client:
                await wait_until_async(lambda: app.state.context.plane.ready(), what="the front-end following")
                started = time.monotonic()
                answer = await client.post("/v1/models/tiny/classify", files={"text": (None, "cat dog")},
                                           headers={"X-Request-Timeout-Ms": "500"})  # fmt: skip
                took_s = time.monotonic() - started
                await wait_until_async(lambda: any(m["op"] == "cancel" for _, m in seen), what="the cancel")
    finally:
        engine.cancel()
    assert answer.status_code == 504 and "did not answer within the request's deadline" in answer.text
    assert 0.5 + REPLY_MARGIN_S - 0.05 <= took_s < 0.5 + REPLY_MARGIN_S + 1.0, took_s
    (_, sent), (_, cancel) = [entry for entry in seen if entry[1]["op"] in ("calls", "cancel")]
    (call,) = sent["calls"]
    assert sent["op"] == "calls" and cancel == {"op": "cancel", "id": call["id"]}
    assert call["request_id"] == answer.headers["x-request-id"]  # the engine would have logged this id


class StartingServer(Server):
    """`fusionserve serve` not awaited ready: with a version that never loads, /readyz never says 200."""

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        pass


def test_an_engine_that_dies_loading_a_version_skips_it_when_restarted_and_the_others_serve(tiny_models, tmp_path):
    """A native crash inside onnxruntime (segfault, abort) has no Python trigger we may plant: the death is the
    test's SIGKILL, sent while the engine's log says it is loading that version. Its manifest is a FIFO nobody
    writes, so the load stays inside that version (as a crashing InferenceSession would) until the kill."""
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    shutil.copytree(tiny_models / "tiny" / "1", models / "crashy" / "1")  # "crashy" loads before "tiny"
    (models / "crashy" / "1" / "manifest.json").unlink()
    os.mkfifo(models / "crashy" / "1" / "manifest.json")
    server = StartingServer(models, tmp_path / "serve.log", workers=1)
    try:
        wait_until(lambda: "model crashy version 1: loading" in server.tail(200), 90, "the engine loading crashy/1")
        (first_engine,) = server.child_pids("engine")
        os.kill(first_engine, signal.SIGKILL)
        wait_until(lambda: server.child_pids("engine") != [first_engine], 60, "the supervisor restarting the engine")
        wait_until(lambda: classify(server.url) == 200, 90, "tiny served by the restarted engine")
        readiness = httpx.get(server.url + "/readyz", timeout=10).json()
        crashed = readiness["models"]["crashy"]["1"]
        assert crashed["status"] == "failed" and crashed["reason"] == CRASHED, crashed
        rows = httpx.post(server.url + "/v2/repository/index", json={}, timeout=10).json()
        assert {"name": "crashy", "version": "1", "state": "UNAVAILABLE", "reason": CRASHED} in rows, rows
        assert server.process.poll() is None and server.tail(400).count("exited with -9: restarting it") == 1
    finally:
        assert server.stop() == 0, server.tail()


def classify(url: str) -> int:
    try:
        return httpx.post(url + "/v1/models/tiny/classify", files={"text": (None, "cat")}, timeout=10).status_code
    except httpx.TransportError:
        return 0
