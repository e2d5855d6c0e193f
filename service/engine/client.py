"""A front-end's connection to its engine (service/engine/server.py): prepared items out, results back, over one
ZeroMQ DEALER socket read by one task; a caller that goes away cancels its items in the engine.

    client = EngineClient(endpoint); client.start()
    results = await client.infer("tiny", None, items, deadline)   # list[ItemResult], or the engine's FusionError
    ready = await client.ping(timeout_s=1.0)                      # None: no answer (engine gone or busy)

Not yet wired into the data plane (issue 20 §1): DataPlane.infer = prepare + this instead of the pipeline.
"""

from __future__ import annotations

import asyncio
import itertools
import time

import orjson
import zmq
import zmq.asyncio

from service.engine import wire
from service.errors import FusionError
from service.inference.pipeline import ItemResult
from service.inference.prepare import PreparedItem


def remote_error(fields: dict) -> FusionError:
    """The engine's FusionError, with its HTTP meaning, as the front-end raises it."""
    error = FusionError(fields["message"], field=fields.get("field"), headers=fields.get("headers") or {})
    error.status, error.type = fields["status"], fields["type"]
    return error


class EngineClient:
    def __init__(self, endpoint: str):
        self.context = zmq.asyncio.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.connect(endpoint)
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future] = {}
        self.reader: asyncio.Task | None = None

    def start(self) -> None:
        self.reader = asyncio.create_task(self._read(), name="engine-replies")

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.wait({self.reader})
        self.socket.close(linger=0)
        self.context.term()

    async def _read(self) -> None:
        while True:
            frames = await self.socket.recv_multipart(copy=False)
            header = orjson.loads(frames[0].bytes)
            future = self.waiting.pop(header.get("id"), None)
            if future is not None and not future.done():
                future.set_result(frames)

    async def _call(self, frames: list, request_id: int) -> list:
        future = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        await self.socket.send_multipart(frames, copy=False)
        try:
            return await future
        except asyncio.CancelledError:
            self.waiting.pop(request_id, None)
            await self.socket.send(orjson.dumps({"op": "cancel", "id": request_id}))
            raise

    async def infer(self, model: str, version: str | None, items: list[PreparedItem], deadline: float):
        """Run `items` in the engine; the deadline (time.monotonic() based) travels as the time left."""
        request_id = next(self.ids)
        header = {"op": "infer", "id": request_id, "model": model, "version": version,
                  "timeout_s": deadline - time.monotonic()}  # fmt: skip
        frames = await self._call(wire.pack_items(header, items), request_id)
        reply = orjson.loads(frames[0].bytes)
        if not reply["ok"]:  # an error reply is its header alone
            raise remote_error(reply["error"])
        return wire.unpack_results(frames)[1]

    async def ping(self, timeout_s: float) -> bool | None:
        """Whether the engine says it is ready; None when it does not answer within `timeout_s`."""
        request_id = next(self.ids)
        try:
            frames = await asyncio.wait_for(self._call([orjson.dumps({"op": "ping", "id": request_id})], request_id),
                                            timeout_s)  # fmt: skip
        except TimeoutError:
            return None
        return bool(orjson.loads(frames[0].bytes)["ready"])


__all__ = ["EngineClient", "ItemResult", "remote_error"]
