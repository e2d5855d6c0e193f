"""The local backend (service/backend.py): items run on this process's pipelines. The one-process server's
backend, and what an engine process serves its front-ends' calls with (service/engine/server.py)."""

from __future__ import annotations

import asyncio
import logging

from service.admission import DrainMeter
from service.engine.registry import Registry
from service.engine.reload import ModelRepository
from service.errors import NotReady
from service.items import ItemResult, PreparedItem
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger("fusionserve")


class LocalBackend:
    def __init__(self, settings: Settings, metrics: Metrics, registry: Registry | None = None):
        self.models = registry if registry is not None else Registry(settings, metrics)
        self.repository = ModelRepository(self.models)
        self.meters: dict[tuple[str, str], DrainMeter] = {}
        self.loader: asyncio.Task | None = None  # the start-up load

    def meter(self, model: str, version: str) -> DrainMeter:
        return self.meters.setdefault((model, version), DrainMeter())

    async def run(self, model: str, version: str, items: list[PreparedItem], deadline: float) -> list[ItemResult]:
        state = self._serving(model, version)
        with state.hold():  # a version being unloaded stops its batchers only once no request holds it
            if len(items) == 1:  # the common case: no gather (a task per item) for one item
                return [await state.pipeline.run(items[0], deadline)]
            return list(await asyncio.gather(*(state.pipeline.run(item, deadline) for item in items)))

    def _serving(self, model: str, version: str):
        """The version's state while it still runs: ready, or draining (retired while requests it admitted
        finish on it); otherwise the lookup's own 404 / 503."""
        entry = self.models.models.get(model)
        state = entry.versions.get(version) if entry is not None else None
        if state is not None and state.status in ("ready", "draining") and state.pipeline is not None:
            return state
        if (why := self.models.unloaded_versions.get((model, version))) is not None:
            raise NotReady(why)
        return self.models.get(model, version)

    async def start(self) -> None:
        self.loader = asyncio.create_task(self.models.load_all(self.models.discover()))
        self.loader.add_done_callback(_log_load_failure)
        self.repository.start(self.loader)  # polls model_dir when FUSIONSERVE_MODEL_POLL_S > 0

    async def stop(self) -> None:
        if self.loader is not None:
            self.loader.cancel()
        await self.repository.stop()
        await self.models.stop()


def _log_load_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("model loading crashed", exc_info=task.exception())
