"""The engine process (issue 20 §1): one per device, the only owner of the registry's batchers and onnxruntime
sessions, running the prepared items that front-end processes send it (service/engine/client.py).

One ZeroMQ ROUTER socket; every message is wire.py frames (a JSON header, then the arrays):

    {"op": "infer", "id", "model", "version", "timeout_s"} + items → {"id", "ok": true} + results
                                                                    | {"id", "ok": false, "error": {...}}
    {"op": "cancel", "id"}  the request's items leave their queues before compute; it answers 499
    {"op": "ping", "id"}    → {"id", "ok": true, "ready": every configured model loaded and warm}

Errors travel as a FusionError's status, type, message, field and headers, so a front-end raises the same
error a single process would. Not yet wired into `fusionserve serve` (the supervisor, door admission across
processes and shared metrics are still to come): `python -m service.engine.server ENDPOINT` runs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time

import orjson
import zmq
import zmq.asyncio

from service.cycle import ClientDisconnected
from service.engine import wire
from service.errors import FusionError
from service.inference.registry import Registry
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
        self.tasks: dict[tuple[bytes, object], asyncio.Task] = {}  # (front-end identity, request id) → its work

    async def run(self) -> None:
        """Load every bundle, then serve messages until cancelled; the batchers drain on the way out."""
        context = zmq.asyncio.Context()
        socket = context.socket(zmq.ROUTER)
        socket.bind(self.endpoint)
        loader = asyncio.create_task(self.registry.load_all(self.registry.discover()))
        try:
            while True:
                identity, *frames = await socket.recv_multipart(copy=False)
                self._dispatch(socket, identity.bytes, frames)
        finally:
            loader.cancel()
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
            ready = {"id": header.get("id"), "ok": True, "ready": self.registry.all_ready()}
            socket.send_multipart([identity, orjson.dumps(ready)])
        else:
            task = asyncio.create_task(self._answer(socket, identity, frames))
            self.tasks[key] = task
            task.add_done_callback(lambda _: self.tasks.pop(key, None))

    async def _answer(self, socket, identity: bytes, frames: list) -> None:
        header, items = wire.unpack_items(frames)
        try:
            state = self.registry.get(header["model"], header.get("version"))
            deadline = time.monotonic() + header["timeout_s"]
            results = await asyncio.gather(*(state.pipeline.run(item, deadline) for item in items))
            reply = wire.pack_results({"id": header["id"], "ok": True}, results)
        except asyncio.CancelledError:  # the front-end's caller went away: the items left their queues
            reply = [orjson.dumps(error_header(header["id"], ClientDisconnected()))]
        except FusionError as error:
            reply = [orjson.dumps(error_header(header["id"], error))]
        await socket.send_multipart([identity, *reply], copy=False)


async def serve(settings: Settings, endpoint: str) -> None:
    """Run an engine until SIGTERM or SIGINT, which cancel it: its batchers drain before it returns."""
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    for stop in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(stop, task.cancel)
    await Engine(settings, endpoint).run()


def main(argv: list[str] | None = None) -> int:
    endpoint = (argv if argv is not None else sys.argv[1:])[0]
    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(serve(settings, endpoint))
    return 0


if __name__ == "__main__":
    sys.exit(main())
