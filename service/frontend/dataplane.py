"""The data plane: the one seam between the protocols (v1, KServe V2 REST and gRPC, OpenAI) and inference, in
the style of MLServer's DataPlane. Every protocol's request runs one cycle, `serve` (service/frontend/cycle.py): the
protocol supplies a Codec (decode, encode) and its error shape; tracking, admission, the deadline, the
disconnect watch, inference and the stage metrics are written here once, so every protocol shares the
batchers, the limits, the metrics and the error rules.

    served = await plane.serve(Call(model, version, endpoint), codec)   # 404 / 429 before the body is read

Judged at the door before its body is read (404, 429), a request counts as load and holds its version only
once the body is in (judged again then: a version retired meanwhile is 404 / 503), so a body trickling in (cut
at its deadline, api/body.py) neither tightens the door nor keeps an unload from finishing.

Admission at the door: a request is refused (429) when the work already admitted for its model version
would make it wait longer than `max_queue_wait_ms` — the requests in flight divided by that version's drain
rate (service/admission.py: its best recent second) — so the bound follows from time, not from a fixed
count; Retry-After is DrainMeter.retry_after_s. Up to max_batch_size requests in flight nobody is refused
(one full batch, see _check_door); with no completions in the last CAPACITY_WINDOW_S (a cold start) there is
no rate to judge by and only the per-component queue bounds (max_queued_items) apply. Admitted requests are bounded,
so the preprocessing backlog is too (each holds at most max_items_per_request items).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

from service.admission import DrainMeter
from service.backend import Backend
from service.errors import ClientDisconnected, FusionError, InvalidInput, QueueFull
from service.frontend.body_budget import BodyBudget
from service.frontend.cycle import Admitted, Call, Codec, Inference, Served, record_stages
from service.frontend.describe import describe_entry, describe_models
from service.items import PreparedItem, RawItem
from service.metrics import Metrics
from service.models import VersionState
from service.preprocess.prepare import prepare_item
from service.settings import Settings
from service.tracing import spans

REJECT_REASON = {413: "too_large", 400: "invalid", 415: "invalid", 422: "invalid", 408: "deadline"}  # by status


@dataclass
class Tracked:
    """One request's accounting (DataPlane.track); `status` is the protocol-neutral outcome, HTTP-numbered."""

    model_label: str
    status: str = "200"


class DataPlane:
    def __init__(self, backend: Backend, settings: Settings, metrics: Metrics, draining: Callable[[], bool]):
        self.backend, self.settings, self.metrics = backend, settings, metrics
        self.registry = backend.models  # what is served, whichever backend runs it
        self.draining = draining  # the server's shutdown state (set on SIGTERM, before the lifespan ends)
        self.preprocess_pool: ThreadPoolExecutor | None = None  # started with the app (lifespan)
        self.body_budget = BodyBudget(settings.max_inflight_body_bytes)  # every protocol's bodies in this process

    # ---- health and metadata -------------------------------------------------------------------

    def ready(self) -> bool:
        """Every configured model loaded, verified and warm, and not draining."""
        return self.registry.all_ready() and not self.draining()

    def readiness(self) -> dict:
        """/readyz's body: per model and version, its status, provider in use and failure reason."""
        return {"ready": self.ready(), "draining": self.draining(), "providers_requested": self.settings.providers,
                "models": describe_models(self.registry)}  # fmt: skip

    def models(self) -> list[dict]:
        return [describe_entry(e, self.settings) for e in self.registry.models.values()]

    def describe(self, model: str) -> dict:
        return describe_entry(self.registry.entry(model), self.settings)

    def resolve(self, model: str, version: str | None = None) -> VersionState:
        """The ready version asked for (default: the newest ready one); 404 / 503 otherwise."""
        return self.registry.get(model, version)

    def ready_versions(self, model: str) -> list[str]:
        """The model's ready versions, newest first; 404 for an unknown model."""
        return [v.version for v in self.registry.entry(model).ready_versions()]

    def model_ready(self, model: str, version: str | None) -> bool:
        """Whether the version (default: any) is loaded, verified and warm and the server is not draining.
        An unknown model is not False but NotFound (404), as everywhere else."""
        entry = self.registry.entry(model)
        if self.draining():
            return False
        if version is None:
            return bool(entry.ready_versions())
        state = entry.versions.get(version)
        return state is not None and state.status == "ready"

    # ---- per-request accounting (every protocol) ---------------------------------------------------

    @asynccontextmanager
    async def track(self, model: str, endpoint: str):
        """In-flight gauge, requests_total by outcome, request duration and rejected_total for one request,
        whatever protocol carried it. A FusionError sets the status from its HTTP meaning; ClientDisconnected
        is 499; anything else escaping is 500."""
        label = model if model in self.registry.models else "unknown"  # no label per made-up model name
        tracked, started = Tracked(label), time.perf_counter()
        self.metrics.inflight_requests.inc()
        try:
            yield tracked
        except FusionError as error:  # ClientDisconnected included: 499
            tracked.status = str(error.status)
            reason = getattr(error, "reject_reason", None) or REJECT_REASON.get(error.status)
            if reason is not None and label != "unknown":
                self.metrics.reject(label, reason)
            raise
        except BaseException:
            tracked.status = "500"
            raise
        finally:
            self.metrics.inflight_requests.dec()
            self.metrics.requests_total.labels(label, endpoint, tracked.status).inc()
            self.metrics.request_duration.labels(label, endpoint).observe(time.perf_counter() - started)

    # ---- admission -----------------------------------------------------------------------------

    def meter(self, model: str, version: str) -> DrainMeter:
        return self.backend.meter(model, version)

    def _check_door(self, model: str, meter: DrainMeter, now: float) -> None:
        # One full batch in flight is never refused: a lower floor lets clients that retry at once starve the
        # admitted few, so the measured rate never rises (docs/design-choices.md, the door's floor)
        floor = self.settings.max_batch_size
        wait = meter.expected_wait_s(now)
        limit = self.settings.max_queue_wait_ms / 1000
        if wait is None or meter.load() < floor or wait <= limit:
            return  # no rate measured yet (cold): the per-component queue bounds still apply
        self.metrics.reject(model, "queue_full")
        meter.refused(now)
        raise QueueFull(
            f"model {model!r} is at capacity: {meter.load()} requests in flight, expected wait "
            f"{wait * 1000:.0f} ms > "
            f"{self.settings.max_queue_wait_ms:g} ms (FUSIONSERVE_MAX_QUEUE_WAIT_MS)",
            headers={"Retry-After": str(meter.retry_after_s(now))},
        )

    def judge(self, model: str, version: str | None, *, explain: bool = False) -> tuple[VersionState, DrainMeter]:
        """The version a request would be admitted to now, and its meter; 404 / 503 / 422 / 429 otherwise."""
        state = self.resolve(model, version)
        if explain and not state.bundle.manifest.fusion.has_modality_logits:
            raise InvalidInput(
                f"model {model!r} version {state.version!r} has no per-modality heads; "
                "explain=true is unavailable for it",
                field="explain",
            )
        meter = self.meter(model, state.version)
        self._check_door(model, meter, time.monotonic())
        return state, meter

    @asynccontextmanager
    async def admit(self, model: str, version: str | None = None, *, explain: bool = False):
        """A request whose body is in, judged again, counted as load and holding its version: an Admitted."""
        state, meter = self.judge(model, version, explain=explain)
        meter.admitted()
        served = False
        try:
            with state.hold():  # a version being unloaded stops its batchers only once no request holds it
                yield Admitted(model, state)
            served = True
        finally:
            meter.completed(time.monotonic(), served=served)

    # ---- the request cycle (service/frontend/cycle.py) ---------------------------------------------------

    async def serve(self, call: Call, codec: Codec) -> Served:
        """One request of any protocol, from accounting to its encoded answer; errors leave as FusionError."""
        started = time.perf_counter()
        async with self.track(call.model, call.endpoint):
            spans.annotate_request(call.model, call.version, call.endpoint)
            codec.check()
            self.judge(call.model, call.version, explain=call.explain)  # 404 / 429 before the body is read
            await codec.read_body()  # by its deadline (api/body.py); meanwhile no load counted, no version held
            async with self.admit(call.model, call.version, explain=call.explain) as admitted:
                decoded = await codec.decode(admitted)
                done = await self._infer_watched(admitted, decoded, codec)
                post_started = time.perf_counter()
                body = codec.encode(admitted, done)
                record_stages(self.metrics, call.model, done, time.perf_counter() - post_started)
        return Served(body, done, time.perf_counter() - started)

    async def _infer_watched(self, admitted: Admitted, decoded, codec: Codec) -> Inference:
        watcher = codec.watch()  # after decode: an HTTP body must be read before a disconnect can be heard
        try:
            return await self.infer(admitted, decoded.items, decoded.deadline, cancelled=watcher)
        finally:
            if watcher is not None:
                watcher.cancel()

    # ---- inference -----------------------------------------------------------------------------

    async def prepare(self, admitted: Admitted, raw_items: list[RawItem], deadline: float) -> list[PreparedItem]:
        """Decode and preprocess in the thread pool, never on the event loop; decoding that checks the deadline
        (video, between frames) stops at it."""
        bundle, loop = admitted.state.bundle, asyncio.get_running_loop()
        prepare = spans.traced_prepare(prepare_item)  # prepare_item itself when tracing is off
        jobs = [
            loop.run_in_executor(
                self.preprocess_pool, prepare, raw, bundle.manifest, bundle.tokenizer, self.settings, deadline
            )  # fmt: skip
            for raw in raw_items
        ]
        return list(await asyncio.gather(*jobs))

    async def infer(
        self, admitted: Admitted, raw_items: list[RawItem], deadline: float, cancelled: asyncio.Future | None = None
    ) -> Inference:
        """Preprocess and run every item; if `cancelled` completes first, the items leave their queues
        before compute and ClientDisconnected is raised."""
        items = await self.prepare(admitted, raw_items, deadline)
        work = asyncio.ensure_future(self.backend.run(admitted.model, admitted.state.version, items, deadline))
        if cancelled is None:
            return Inference(items, list(await work))
        try:
            await asyncio.wait({work, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # this caller itself was cancelled: never leave the work running
            work.cancel()
            raise
        if work.done():
            return Inference(items, list(work.result()))
        work.cancel()
        await asyncio.wait({work})
        raise ClientDisconnected()
