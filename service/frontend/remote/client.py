"""A front-end's connection to one engine (service/engine/server.py): prepared items out, results back, over one
ZeroMQ DEALER socket read by one task; a caller that goes away cancels its items in the engine. The calls made
in one event-loop turn leave together as one `calls` message at the turn's end, and one `replies` message
answers many (service/wire/calls.py, docs/architecture.md "The engine sees batches").

    client = EngineClient(endpoint); client.start()
    results = await client.infer("tiny", None, items, deadline)   # list[ItemResult], or the engine's FusionError
    status = await client.status(timeout_s=1.0)                   # the ping answer; None: no answer in time

The socket's monitor tells when the engine process goes away (its end of the socket closes, even on kill -9):
every call waiting on it fails at once with 503 (NotReady) instead of waiting for a reply that will never
come, and new calls are refused until an engine is back on the endpoint (ZeroMQ reconnects by itself).
Every reply's "load" report goes to `on_load` (service/frontend/remote/backend.py: door admission).

An inference call waits for the engine at most its deadline plus REPLY_MARGIN_S (the engine answers 504 itself
for items still queued at the deadline; a batch computing then is awaited): past that it is 504 and cancelled
in the engine, so an engine that hangs (a stuck device, a lost message) never holds a caller forever. The call
carries the request's id (service/errors.py REQUEST_ID), which the engine's log line of a failure names.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable

import orjson
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from service import tracing
from service.errors import DeadlineExceeded, FusionError, NotReady, current_request_id
from service.items import ItemResult, PreparedItem
from service.wire import calls
from service.wire import frames as wire

log = logging.getLogger("fusionserve.frontend")
# How long past a request's deadline a front-end still waits for the engine's answer: the engine answers 504
# at the deadline for queued items, and a batch already computing then finishes within about one batch time
# (tens of ms on the default bundle); one second covers a slow batch without holding a caller much longer.
REPLY_MARGIN_S = 1.0


def remote_error(fields: dict) -> FusionError:
    """The engine's FusionError, with its HTTP meaning, as the front-end raises it."""
    error = FusionError(fields["message"], field=fields.get("field"), headers=fields.get("headers") or {})
    error.status, error.type = fields["status"], fields["type"]
    return error


def engine_gone() -> NotReady:
    return NotReady("the engine process stopped; it is being restarted: retry shortly", headers={"Retry-After": "1"})


class EngineClient:
    def __init__(self, endpoint: str, on_load: Callable[[list], None] | None = None,
                 on_change: Callable[[], None] | None = None):  # fmt: skip
        self.endpoint, self.on_load, self.on_change = endpoint, on_load, on_change
        self.context = zmq.asyncio.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing for an engine that is not there
        self.monitor = self.socket.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        self.socket.connect(endpoint)
        self.connected = False
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future] = {}
        self.outbox: list[tuple[dict, list[PreparedItem]]] = []  # calls of this event-loop turn, sent at its end
        self.tasks: list[asyncio.Task] = []
        self.last_status: dict | None = None  # the engine's last ping answer (None: none since it connected)

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._read(), name="engine-replies"),
                      asyncio.create_task(self._watch(), name="engine-monitor")]  # fmt: skip

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks)
        self.socket.disable_monitor()
        self.monitor.close(linger=0)
        self.socket.close(linger=0)
        self.context.term()

    @property
    def outstanding(self) -> int:
        return len(self.waiting)

    async def _watch(self) -> None:
        while True:
            event = parse_monitor_message(await self.monitor.recv_multipart())["event"]
            self.connected = event == zmq.EVENT_CONNECTED
            if not self.connected:
                self.last_status = None
                for future in self.waiting.values():
                    if not future.done():
                        future.set_exception(engine_gone())
                self.waiting.clear()
            if self.on_change is not None:
                self.on_change()

    async def _read(self) -> None:
        while True:
            frames = await self.socket.recv_multipart(copy=False)
            try:
                header = orjson.loads(frames[0].bytes)
                answers = self._answers(header, frames)
            except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):  # reading goes on
                log.error("a malformed reply from the engine at %s was dropped", self.endpoint)
                continue
            if self.on_load is not None and "load" in header:
                self.on_load(header["load"])
            for request_id, answer in answers:
                future = self.waiting.pop(request_id, None) if isinstance(request_id, int) else None
                if future is not None and not future.done():
                    future.set_result(answer)

    @staticmethod
    def _answers(header: dict, frames: list) -> list[tuple[object, tuple[dict, list[ItemResult]]]]:
        """(call id, (reply header, results)) per call a message answers: a `replies` message answers many."""
        if "replies" not in header:
            return [(header.get("id"), (header, []))]
        replies = calls.unpack_replies(header, wire.arrays_of(header, frames))
        return [(reply.get("id"), (reply, results)) for reply, results in replies]

    async def _call(self, frames: list | None, request_id: int, timeout_s: float | None = None) -> tuple[dict, list]:
        """The engine's (reply header, results); TimeoutError after `timeout_s` (None: no limit), the call
        cancelled in the engine. `frames` None: the call is in the outbox, sent with this turn's others."""
        if not self.connected:
            raise engine_gone()
        future = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = future
        if frames is not None:
            try:
                await self.socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:  # the connection went between the check and the send
                self.waiting.pop(request_id, None)
                raise engine_gone() from None
        try:
            done, _ = await asyncio.wait({future}, timeout=timeout_s)
        except asyncio.CancelledError:
            await self._abandon(request_id)
            raise
        if not done:
            await self._abandon(request_id)
            raise TimeoutError
        return future.result()

    async def _abandon(self, request_id: int) -> None:
        self.waiting.pop(request_id, None)
        with contextlib.suppress(zmq.Again):  # no engine: nothing of the call is left to cancel
            await self.socket.send(orjson.dumps({"op": "cancel", "id": request_id}), flags=zmq.NOBLOCK)

    async def infer(self, model: str, version: str | None, items: list[PreparedItem], deadline: float):
        """Run `items` in the engine; the deadline (time.monotonic() based) travels as the time left."""
        request_id, left_s = next(self.ids), deadline - time.monotonic()
        call = {"id": request_id, "model": model, "version": version, "timeout_s": left_s,
                "request_id": current_request_id()}  # fmt: skip
        tracing.inject(call)  # traceparent / tracestate: the engine's spans join this request's trace
        if self.connected:
            if not self.outbox:
                asyncio.get_running_loop().call_soon(self._send_outbox)
            self.outbox.append((call, items))
        try:
            reply, results = await self._call(None, request_id, max(left_s, 0.0) + REPLY_MARGIN_S)
        except TimeoutError:
            raise DeadlineExceeded(
                f"the engine did not answer within the request's deadline + {REPLY_MARGIN_S:g} s; "
                "the request was cancelled in the engine"
            ) from None
        if not reply["ok"]:
            raise remote_error(reply["error"])
        return results

    def _send_outbox(self) -> None:
        """This turn's calls as one message (those given up meanwhile left out)."""
        ready, self.outbox = [(c, items) for c, items in self.outbox if c["id"] in self.waiting], []
        if not ready:
            return
        try:
            sent = self.socket.send_multipart(calls.pack_calls(ready), flags=zmq.NOBLOCK, copy=False)
        except zmq.ZMQError:
            sent = None
        if sent is None or (sent.done() and sent.exception() is not None):  # the engine went between check and send
            for call, _ in ready:
                if (future := self.waiting.pop(call["id"], None)) is not None and not future.done():
                    future.set_exception(engine_gone())

    async def status(self, timeout_s: float) -> dict | None:
        """The engine's ping answer (ready, models, load); None when it does not answer within `timeout_s`."""
        request_id = next(self.ids)
        try:
            reply, _ = await self._call([orjson.dumps({"op": "ping", "id": request_id})], request_id, timeout_s)
        except (TimeoutError, NotReady):
            return None
        self.last_status = reply
        return self.last_status

    async def ping(self, timeout_s: float) -> bool | None:
        """Whether the engine says it is ready; None when it does not answer within `timeout_s`."""
        status = await self.status(timeout_s)
        return None if status is None else bool(status["ready"])

    async def repository(self, action: str, model: str | None, ready_only: bool = False) -> dict:
        """Triton's repository extension in the engine: index, load or unload; the engine's FusionError."""
        request_id = next(self.ids)
        ask = {"op": "repository", "id": request_id, "action": action, "model": model, "ready_only": ready_only,
               "request_id": current_request_id()}  # fmt: skip
        reply, _ = await self._call([orjson.dumps(ask)], request_id)
        if not reply["ok"]:
            raise remote_error(reply["error"])
        return reply


__all__ = ["EngineClient", "ItemResult", "remote_error"]
