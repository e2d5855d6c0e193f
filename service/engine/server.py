"""The engine process (issue 20 §1): one per device, the only owner of the registry's batchers and onnxruntime
sessions, running the prepared items that front-end processes send it (service/engine/client.py).

One ZeroMQ ROUTER socket; every message is wire.py frames (a JSON header, then the arrays):

    {"op": "infer", "id", "model", "version", "timeout_s"} + items → {"id", "ok": true} + results
                                                                    | {"id", "ok": false, "error": {...}}
    {"op": "cancel", "id"}  the request's items leave their queues before compute; it answers 499
    {"op": "ping", "id"}    → {"id", "ok": true, "ready": every configured model loaded and warm,
                               "models": state.snapshot(registry)}
    {"op": "repository", "id", "action": "index" | "load" | "unload", "model", "ready_only"}
                            → {"id", "ok": true, "rows": [...], "failed": [[version, reason], ...]}

Every answer also carries "load": per model version, the requests in this engine and its drain rate
(service/admission.py), from which each front-end's door judges the engine's whole load. Errors travel as a
FusionError's status, type, message, field and headers, so a front-end raises the same error a single
process would. The supervisor (service/supervisor.py) runs one per device; `python -m service.engine.server
ENDPOINT` runs one by hand. Live reload (FUSIONSERVE_MODEL_POLL_S, the repository API) happens here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import Counter

import orjson
import zmq
import zmq.asyncio

from service.admission import DrainMeter
from service.cycle import ClientDisconnected
from service.engine import wire
from service.engine.state import snapshot
from service.errors import FusionError
from service.inference.registry import Registry
from service.inference.reload import ModelRepository
from service.metrics import Metrics
from service.settings import Settings, load_settings

log = logging.getLogger("fusionserve.engine")


def error_header(request_id, error: FusionError) -> dict:
    fields = {"status": error.status, "type": error.type, "message": error.message, "field": error.field}
    return {"id": request_id, "ok": False, "error": fields | {"headers": error.headers}}


class Engine:
    def __init__(self, settings: Settings, endpoint: str):
        self.settings, self.endpoint = settings, endpoint
        self.registry = Registry(settings, Metrics())
        self.repository = ModelRepository(self.registry)
        self.tasks: dict[tuple[bytes, object], asyncio.Task] = {}  # (front-end identity, request id) → its work
        self.meters: dict[tuple[str, str], DrainMeter] = {}  # per model version: requests here, drain rate
        self.senders: Counter[tuple[str, str, bytes]] = Counter()  # requests here per model version, front-end

    async def run(self) -> None:
        """Load every bundle, then serve messages until cancelled; the batchers drain on the way out."""
        context = zmq.asyncio.Context()
        socket = context.socket(zmq.ROUTER)
        socket.bind(self.endpoint)
        loader = asyncio.create_task(self.registry.load_all(self.registry.discover()))
        self.repository.start(loader)  # polls model_dir when FUSIONSERVE_MODEL_POLL_S > 0
        try:
            while True:
                identity, *frames = await socket.recv_multipart(copy=False)
                self._dispatch(socket, identity.bytes, frames)
        finally:
            loader.cancel()
            await self.repository.stop()
            await self.registry.stop()
            socket.close(linger=0)
            context.term()

    def _dispatch(self, socket, identity: bytes, frames: list) -> None:
        header = orjson.loads(frames[0].bytes)
        key = (identity, header.get("id"))
        if header.get("op") == "cancel":
            if (task := self.tasks.get(key)) is not None:
                task.cancel()
        elif header.get("op") == "ping":
            state = {"ready": self.registry.all_ready(), "models": snapshot(self.registry), "load": self.load(identity)}
            socket.send_multipart([identity, orjson.dumps({"id": header.get("id"), "ok": True} | state)])
        else:
            answer = self._answer if header.get("op") == "infer" else self._repository
            task = asyncio.create_task(answer(socket, identity, frames))
            self.tasks[key] = task
            task.add_done_callback(lambda _: self.tasks.pop(key, None))

    def load(self, identity: bytes) -> list:
        """[model, version, requests here from the other front-ends, drain rate or None] per model version served:
        a front-end counts its own requests exactly itself (admission.EngineMeter)."""
        now = time.monotonic()
        return [[model, version, meter.in_flight - self.senders[(model, version, identity)], meter.rate(now)]
                for (model, version), meter in self.meters.items()]  # fmt: skip

    async def _answer(self, socket, identity: bytes, frames: list) -> None:
        header, items = wire.unpack_items(frames)
        meter, results, error = None, None, None
        try:
            state = self.registry.get(header["model"], header.get("version"))
            sender = (header["model"], state.version, identity)
            meter = self.meters.setdefault(sender[:2], DrainMeter())
            meter.admitted()
            self.senders[sender] += 1
            deadline = time.monotonic() + header["timeout_s"]
            with state.hold():  # a version being unloaded stops its batchers only once no request holds it
                results = await asyncio.gather(*(state.pipeline.run(item, deadline) for item in items))
        except asyncio.CancelledError:  # the front-end's caller went away: the items left their queues
            error = ClientDisconnected()
        except FusionError as failure:
            error = failure
        if meter is not None:
            meter.completed(time.monotonic())
            self.senders[sender] -= 1
            if not self.senders[sender]:  # a restarted front-end connects under a new identity
                del self.senders[sender]
        if error is None:
            reply = wire.pack_results({"id": header["id"], "ok": True, "load": self.load(identity)}, results)
        else:
            reply = [orjson.dumps(error_header(header["id"], error) | {"load": self.load(identity)})]
        await socket.send_multipart([identity, *reply], copy=False)

    async def _repository(self, socket, identity: bytes, frames: list) -> None:
        """Triton's repository extension, run where the models live (api/repository.py on a front-end)."""
        header = orjson.loads(frames[0].bytes)
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
        reply |= {"models": snapshot(self.registry)}  # the caller's front-end follows at once
        await socket.send_multipart([identity, orjson.dumps(reply)])


async def serve(settings: Settings, endpoint: str, stop_signals=(signal.SIGTERM, signal.SIGINT)) -> None:
    """Run an engine until a stop signal cancels it: its batchers drain before it returns."""
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    for stop in stop_signals:
        loop.add_signal_handler(stop, task.cancel)
    await Engine(settings, endpoint).run()


def run_engine(overrides: dict, endpoint: str) -> None:
    """A supervised engine process's entry point (service/supervisor.py): settings from the environment and
    the supervisor's overrides (the device for this engine among them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor orders the stop
    settings = load_settings(**overrides)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(serve(settings, endpoint, (signal.SIGTERM,)))


def main(argv: list[str] | None = None) -> int:
    endpoint = (argv if argv is not None else sys.argv[1:])[0]
    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(serve(settings, endpoint))
    return 0


if __name__ == "__main__":
    sys.exit(main())
