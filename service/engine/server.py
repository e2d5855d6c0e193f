"""The engine process: one per device, the only owner of the registry's batchers and onnxruntime
sessions, running the prepared items that front-end processes send it (service/frontend/remote/client.py).

One ZeroMQ ROUTER socket; every message is service/wire/frames.py frames (a JSON header, then the arrays):

    {"op": "calls", "calls": [{"id", "model", "version", "timeout_s", "request_id", "items"}, …]} + arrays
                            → {"replies": [{"id", "ok": true, "results"} | {"id", "ok": false, "error"}, …]}
                              (service/wire/calls.py; engine/calls.py runs them: replies of one turn together)
    {"op": "cancel", "id"}  the call's items leave their queues before compute; it answers 499
    {"op": "ping", "id"}    → {"id", "ok": true, "ready": every configured model loaded and warm,
                               "models": snapshot(registry), engine/snapshot.py}
    {"op": "repository", "id", "action": "index" | "load" | "unload", "model", "ready_only"}
                            → {"id", "ok": true, "rows": [...], "failed": [[version, reason], ...]}

Every answer also carries "load": per model version, the requests in this engine and its drain rate
(service/admission.py), from which each front-end's door judges the engine's whole load. Errors travel as a
FusionError's status, type, message, field and headers, so a front-end raises the same error a single
process would. Every call and repository message is answered: anything else that fails (an onnxruntime
RuntimeError, CUDA out of memory) is a 500 naming the request id of the engine's log line (the front-end's
"request_id", else one made here), counted in fusionserve_internal_errors_total; a malformed message (not
JSON, missing fields, array frames that disagree with its header) is answered with a 500 when it has an id,
dropped (logged, counted) when not, and never ends the loop. The supervisor (service/supervisor/supervisor.py) runs one
per device, with a loading record (engine/loading.py); `python -m service.engine.server ENDPOINT` runs one by
hand. Live reload (FUSIONSERVE_MODEL_POLL_S, the repository API) happens here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import orjson
import zmq
import zmq.asyncio

from service import logs
from service.engine.calls import CallServer, error_header
from service.engine.loading import GuardedRegistry, LoadingRecord
from service.engine.local import LocalBackend
from service.engine.registry import Registry
from service.engine.snapshot import snapshot
from service.errors import FusionError, InternalError, request_id_from
from service.metrics import Metrics
from service.settings import Settings, load_settings
from service.wire import frames as wire

log = logging.getLogger("fusionserve.engine")


class Engine:
    def __init__(self, settings: Settings, endpoint: str, loading_record: Path | None = None):
        self.settings, self.endpoint = settings, endpoint
        self.metrics = Metrics()
        # a batch's callers answered in one turn, so its replies leave in one message (engine/calls.py Outbox)
        registry = Registry(settings, self.metrics, answer_chunk=None)  # run by hand: no supervisor, no record
        if loading_record is not None:
            registry = GuardedRegistry(settings, self.metrics, LoadingRecord(loading_record), answer_chunk=None)
        self.backend = LocalBackend(settings, self.metrics, registry)  # the one-process server's backend
        self.registry, self.repository = self.backend.models, self.backend.repository
        self.calls = CallServer(self.backend, self.metrics)
        self.tasks: dict[tuple[bytes, object], asyncio.Task] = {}  # (front-end identity, request id) → repository

    async def run(self) -> None:
        """Load every bundle, then serve messages until cancelled; the batchers drain on the way out."""
        context = zmq.asyncio.Context()
        socket = context.socket(zmq.ROUTER)
        socket.bind(self.endpoint)
        self.calls.serve(socket)
        await self.backend.start()
        try:
            while True:
                identity, *frames = await socket.recv_multipart(copy=False)
                try:
                    self._dispatch(socket, identity.bytes, frames)
                except wire.MalformedMessage as malformed:
                    self.calls.refuse(identity.bytes, malformed)  # answered by its id, if it has one
                except Exception:  # noqa: BLE001 — one message never ends the loop every front-end depends on
                    self.metrics.internal_errors.labels("engine", "unexpected").inc()
                    log.exception("a message could not be dispatched; dropped")
        finally:
            await self.backend.stop()
            socket.close(linger=0)
            context.term()

    def _dispatch(self, socket, identity: bytes, frames: list) -> None:
        header = wire.read_header(frames)
        if header["op"] == "calls":
            return self.calls.take(identity, header, frames)
        if header["op"] == "cancel":
            return self.calls.cancel(identity, header["id"])
        if header["op"] == "ping":
            state = {"ready": self.registry.all_ready(), "models": snapshot(self.registry),
                     "load": self.calls.load(identity)}  # fmt: skip
            return socket.send_multipart([identity, orjson.dumps({"id": header["id"], "ok": True} | state)])
        key = (identity, header["id"])
        task = asyncio.create_task(self._repository(socket, identity, header))
        self.tasks[key] = task
        task.add_done_callback(lambda _: self.tasks.pop(key, None))

    async def _repository(self, socket, identity: bytes, header: dict) -> None:
        """Triton's repository extension, run where the models live (api/repository.py on a front-end)."""
        reply = {"id": header["id"], "ok": True, "failed": []}
        try:
            if header["action"] == "load":
                failed = await self.repository.load(header["model"])
                reply["failed"] = [[state.version, state.reason] for state in failed]
            elif header["action"] == "unload":
                await self.repository.unload(header["model"])
            reply["rows"] = await self.repository.index(ready_only=header.get("ready_only", False))
        except FusionError as error:
            reply = error_header(header["id"], error)
        except Exception:  # noqa: BLE001 — answered: the operator's call must not hang
            request_id = request_id_from(header.get("request_id"))
            self.metrics.internal_errors.labels("engine", "unexpected").inc()
            log.exception("request id %s: repository %s failed in the engine", request_id, header["action"],
                          extra={"request_id": request_id})  # fmt: skip
            reply = error_header(header["id"], InternalError(request_id, "engine"))
        reply |= {"models": snapshot(self.registry)}  # the caller's front-end follows at once
        await socket.send_multipart([identity, orjson.dumps(reply)])


async def serve(settings: Settings, endpoint: str, stop_signals=(signal.SIGTERM, signal.SIGINT),
                loading_record: Path | None = None) -> None:  # fmt: skip
    """Run an engine until a stop signal cancels it: its batchers drain before it returns."""
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    for stop in stop_signals:
        loop.add_signal_handler(stop, task.cancel)
    await Engine(settings, endpoint, loading_record).run()


def run_loop(main) -> None:
    """uvloop where it is installed (uvicorn[standard] brings it; the front-ends' uvicorn runs on it too): an
    engine turns its loop several times per call, and uvloop's turn costs a fraction of asyncio's."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main)


def run_engine(overrides: dict, endpoint: str, loading_record: Path | None = None) -> None:
    """A supervised engine process's entry point (service/supervisor/supervisor.py): settings from the environment and
    the supervisor's overrides (the device for this engine among them); `loading_record` in the supervisor's
    runtime directory (service/engine/loading.py)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor orders the stop
    settings = load_settings(**overrides)
    logs.configure_logging(settings, "engine")
    with contextlib.suppress(asyncio.CancelledError):
        run_loop(serve(settings, endpoint, (signal.SIGTERM,), loading_record))


def main(argv: list[str] | None = None) -> int:
    endpoint = (argv if argv is not None else sys.argv[1:])[0]
    settings = load_settings()
    logs.configure_logging(settings, "engine")
    with contextlib.suppress(asyncio.CancelledError):
        run_loop(serve(settings, endpoint))
    return 0


if __name__ == "__main__":
    sys.exit(main())
