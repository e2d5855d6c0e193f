"""The remote backend (service/backend.py), a front-end's side of multi-process mode (docs/architecture.md
"Processes"): the data plane's items run in the engines, one per device, each behind an EngineClient.

    backend = RemoteBackend(endpoints, settings, front_ends)
    await backend.start()                             # heartbeats: the follower table tracks the engines
    results = await backend.run(model, version, items, deadline)
    meter = backend.meter(model, version)            # door admission over the engines' whole load

A request goes to the engine with the fewest calls outstanding among those serving its version. A heartbeat
every HEARTBEAT_S asks each engine for its state; the follower table (follower.py) follows their merged view,
so readiness, metadata and reloads track the engines. An engine that dies fails its calls at once (503) and
leaves the view; the supervisor restarts it on the same endpoint and it rejoins when it reports ready.
"""

from __future__ import annotations

import asyncio
import logging

from service.admission import EngineMeter
from service.frontend.remote.client import EngineClient, engine_gone
from service.frontend.remote.follower import FollowerTable, merge
from service.frontend.remote.repository import RemoteRepository
from service.items import ItemResult, PreparedItem
from service.settings import Settings

log = logging.getLogger("fusionserve.frontend")
HEARTBEAT_S = 0.25
STATUS_TIMEOUT_S = 2.0  # an engine silent this long is left out of the view (a batch never takes the loop)


class RemoteBackend:
    def __init__(self, endpoints: list[str], settings: Settings, front_ends: int):
        self.settings, self.front_ends = settings, front_ends
        self.models = FollowerTable(settings)
        self.repository = RemoteRepository(self)
        self.clients = [EngineClient(e, on_load=self._loader(e), on_change=self._changed) for e in endpoints]
        self.meters: dict[tuple[str, str], EngineMeter] = {}
        self._heartbeat: asyncio.Task | None = None
        self._following: asyncio.Task | None = None  # the view followed after a connect or disconnect
        self._follow_lock = asyncio.Lock()

    async def start(self) -> None:
        for client in self.clients:
            client.start()
        self._heartbeat = asyncio.create_task(self._beat(), name="engine-heartbeat")

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.wait({self._heartbeat})
        for client in self.clients:
            await client.close()

    # ---- requests ----------------------------------------------------------------------------------

    def meter(self, model: str, version: str) -> EngineMeter:
        return self.meters.setdefault((model, version), EngineMeter(self.front_ends))

    def _engine_for(self, model: str, version: str) -> EngineClient:
        serving = [c for c in self.clients if c.connected and _serves(c.last_status, model, version)]
        if not serving:
            raise engine_gone()
        return min(serving, key=lambda c: c.outstanding)

    async def run(self, model: str, version: str, items: list[PreparedItem], deadline: float) -> list[ItemResult]:
        return await self._engine_for(model, version).infer(model, version, items, deadline)

    def _loader(self, endpoint: str):
        def record(load: list) -> None:
            for model, version, others, rate in load:
                self.meter(model, version).reports[endpoint] = (others, rate)

        return record

    # ---- following the engines -----------------------------------------------------------------------

    def _changed(self) -> None:
        """An engine connected or went away: readiness now, the view at once."""
        self.models.engine_up = any(c.connected and c.last_status for c in self.clients)
        if not any(c.connected for c in self.clients):
            self.models.engine_lost()
        for client in self.clients:
            if not client.connected:
                for meter in self.meters.values():
                    meter.reports.pop(client.endpoint, None)
        self._following = asyncio.get_running_loop().create_task(self.refresh(ask=False))  # held: not collected

    async def _beat(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # one bad heartbeat must not end following
                log.exception("engine heartbeat failed")
            await asyncio.sleep(HEARTBEAT_S)

    async def refresh(self, ask: bool = True) -> None:
        """Ask every connected engine for its state (unless `ask` is False), then follow their merged view."""
        if ask:
            await asyncio.gather(*(self._ask(c) for c in self.clients if c.connected))
        views = [c.last_status for c in self.clients if c.connected and c.last_status]
        async with self._follow_lock:
            self.models.engine_up = bool(views)
            if views:
                await self.models.follow(merge([v["models"] for v in views]))

    @staticmethod
    async def _ask(client: EngineClient) -> None:
        """Its state into client.last_status (its load report reaches the meters as every answer's does)."""
        if await client.status(STATUS_TIMEOUT_S) is None:
            client.last_status = None

    async def ask_repository(self, action: str, model: str | None, ready_only: bool = False) -> dict:
        """Load and unload reach every engine (each has its own sessions); the index is the first one's."""
        live = [c for c in self.clients if c.connected] or self.clients[:1]
        replies = await asyncio.gather(*(c.repository(action, model, ready_only) for c in live))
        await self.refresh()  # this front-end answers with the new state; the others follow within a heartbeat
        reply = dict(replies[0])
        reply["failed"] = [failed for r in replies for failed in r["failed"]]
        return reply


def _serves(status: dict | None, model: str, version: str) -> bool:
    if not status:
        return False
    seen = status["models"]["models"].get(model, {}).get("versions", {}).get(version)
    return seen is not None and seen["status"] == "ready"
