"""The engine's side of the front-ends' calls (service/wire/calls.py): each call runs through the engine's
LocalBackend (service/engine/local.py, the one-process server's path) with its load counted, and every reply
that finishes in one event-loop turn goes back to its front-end in one message.

Every call is answered: results, its FusionError, 499 when cancelled, else 500 with the request id of the
engine's log line (an onnxruntime RuntimeError, CUDA out of memory, a bug), counted in
fusionserve_internal_errors_total. A call that cannot be read (missing fields, items that disagree with the
arrays) is answered 500 by its id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from service import tracing
from service.engine.local import LocalBackend
from service.errors import REQUEST_ID, ClientDisconnected, FusionError, InternalError, request_id_from
from service.items import ItemResult, PreparedItem
from service.metrics import Metrics
from service.wire import calls as wire_calls
from service.wire.frames import MalformedMessage, arrays_of

log = logging.getLogger("fusionserve.engine")


def error_header(request_id, error: FusionError) -> dict:
    fields = {"status": error.status, "type": error.type, "message": error.message, "field": error.field}
    return {"id": request_id, "ok": False, "error": fields | {"headers": error.headers}}


def malformed_error(malformed: MalformedMessage) -> FusionError:
    error = FusionError(f"the engine could not read the front-end's message: {malformed.reason}")
    error.status, error.type = 500, "internal_error"
    return error


def engine_span(call: dict):
    """The call's span: a SERVER span continuing the front-end's trace (the traceparent the call carries)."""
    if not tracing.ENABLED:
        return tracing.span("")
    from opentelemetry.trace import SpanKind

    carrier = {name: call[name] for name in ("traceparent", "tracestate") if isinstance(call.get(name), str)}
    attributes = {"model": call["model"], "fusionserve.request_id": REQUEST_ID.get() or "", "items": len(call["items"])}
    context = tracing.extract(carrier)
    return tracing.span(f"engine {call['model']}", attributes, kind=SpanKind.SERVER, context=context)


class Outbox:
    """Replies waiting for the end of this event-loop turn: one `replies` message per front-end then."""

    def __init__(self, socket, load_of):
        self.socket, self.load_of = socket, load_of
        self.pending: dict[bytes, list[tuple[dict, list[ItemResult] | None]]] = {}

    def put(self, identity: bytes, reply: dict, results: list[ItemResult] | None = None) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self.pending.setdefault(identity, []).append((reply, results))

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        for identity, replies in pending.items():
            frames = wire_calls.pack_replies({"load": self.load_of(identity)}, replies)
            self.socket.send_multipart([identity, *frames], copy=False)  # a ROUTER never blocks: no await


class CallServer:
    def __init__(self, backend: LocalBackend, metrics: Metrics):
        self.backend, self.metrics = backend, metrics
        self.tasks: dict[tuple[bytes, object], asyncio.Task] = {}  # (front-end identity, call id) → its work
        self.senders: Counter[tuple[str, str, bytes]] = Counter()  # calls here per model version, front-end
        self.outbox: Outbox | None = None  # set once the socket is bound (serve)
        tracing.configure("engine")  # from the OTEL_* environment the engine process inherits; else off

    def serve(self, socket) -> None:
        self.outbox = Outbox(socket, self.load)

    def take(self, identity: bytes, header: dict, frames: list) -> None:
        """A `calls` message: every call starts now; each answers through the outbox when it is done."""
        try:
            arrays = arrays_of(header, frames)
        except ValueError as error:  # the frames do not hold the arrays: no call of it can run
            for call in header["calls"]:
                call_id = call.get("id") if isinstance(call, dict) else None
                self.refuse(identity, MalformedMessage(f"its arrays: {error}", call_id))
            return
        for call in wire_calls.unpack_calls(header, arrays):
            if isinstance(call, MalformedMessage):
                self.refuse(identity, call)
                continue
            key = (identity, call[0]["id"])
            task = asyncio.create_task(self.answer(identity, *call))
            self.tasks[key] = task
            task.add_done_callback(lambda _, key=key: self.tasks.pop(key, None))

    def cancel(self, identity: bytes, call_id) -> None:
        if (task := self.tasks.get((identity, call_id))) is not None:
            task.cancel()

    def refuse(self, identity: bytes, malformed: MalformedMessage) -> None:
        self.metrics.internal_errors.labels("engine", "malformed").inc()
        if malformed.request_id is None:
            log.error("a malformed message was dropped: %s", malformed.reason)
            return
        log.error("message %r is malformed, answered with an error: %s", malformed.request_id, malformed.reason)
        self.outbox.put(identity, error_header(malformed.request_id, malformed_error(malformed)))

    async def answer(self, identity: bytes, call: dict, items: list[PreparedItem]) -> None:
        # each call runs in its own task: its log lines (the log filter reads REQUEST_ID) name its request
        REQUEST_ID.set(request_id_from(call.get("request_id")))
        try:
            with engine_span(call):
                results = await self._run(identity, call, items)
            self.outbox.put(identity, {"id": call["id"], "ok": True}, results)
            return
        except asyncio.CancelledError:  # the front-end's caller went away: the items left their queues
            error: FusionError = ClientDisconnected()
        except FusionError as failure:
            error = failure
        except Exception:  # noqa: BLE001 — answered, so that no front-end caller waits on it
            request_id = request_id_from(call.get("request_id"))
            self.metrics.internal_errors.labels("engine", "unexpected").inc()
            log.exception("request id %s: model %s: unexpected error in the engine", request_id, call["model"])
            error = InternalError(request_id, "engine")
        self.outbox.put(identity, error_header(call["id"], error))

    async def _run(self, identity: bytes, call: dict, items: list[PreparedItem]) -> list[ItemResult]:
        version = call.get("version") or self.backend.models.get(call["model"]).version
        sender = (call["model"], version, identity)
        meter = self.backend.meter(call["model"], version)  # calls here and their drain rate
        meter.admitted()
        self.senders[sender] += 1
        served = False
        try:  # whatever happens below, the load this engine reports goes down again
            results = await self.backend.run(call["model"], version, items, time.monotonic() + call["timeout_s"])
            served = True
            return results
        finally:
            meter.completed(time.monotonic(), served=served)  # only served calls raise the drain rate
            self.senders[sender] -= 1
            if not self.senders[sender]:  # a restarted front-end connects under a new identity
                del self.senders[sender]

    def load(self, identity: bytes) -> list:
        """[model, version, calls here from the other front-ends, drain rate or None] per model version served:
        a front-end counts its own calls exactly itself (admission.EngineMeter)."""
        now = time.monotonic()
        return [[model, version, meter.in_flight - self.senders[(model, version, identity)], meter.rate(now)]
                for (model, version), meter in self.backend.meters.items()]  # fmt: skip
