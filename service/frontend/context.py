"""What the app's routes, middleware and lifespan share, typed: one object at `app.state.context` instead of
loose `app.state` attributes (service/frontend/app.py builds it; api/infer.py's `plane_of` reads the data plane).

One process (`engines` None): the registry loads the bundles and runs them here. A front-end process of
multi-process mode (`engines` = the engine endpoints): a follower registry (light bundles), the engines run
the items, and the repository API is theirs (docs/architecture.md "Processes")."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from service.engine.registry import Registry
from service.engine.reload import ModelRepository
from service.frontend.dataplane import DataPlane
from service.frontend.remote.backend import EngineBackend
from service.frontend.remote.follower import FollowerRegistry
from service.frontend.remote.repository import RemoteRepository
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger("fusionserve")


@dataclass
class ServerContext:
    settings: Settings
    metrics: Metrics
    registry: Registry
    repository: ModelRepository
    plane: DataPlane
    draining: bool = False  # set on SIGTERM (service/frontend/drain.py): /readyz 503, new requests refused
    loader: asyncio.Task | None = None  # the start-up load (lifespan)
    grpc_server: Any = None  # grpc.aio.Server when FUSIONSERVE_GRPC_PORT is set (api/v2/grpc_server.py)
    preprocess_pool: ThreadPoolExecutor | None = None
    engines: EngineBackend | None = None  # multi-process mode: this process is a front-end of these engines

    @classmethod
    def build(cls, settings: Settings, engines: list[str] | None = None, front_ends: int = 1) -> ServerContext:
        metrics = Metrics()
        if engines is None:
            registry = Registry(settings, metrics)
            context = cls(settings, metrics, registry, ModelRepository(registry), plane=None)  # type: ignore[arg-type]
        else:
            registry = FollowerRegistry(settings, metrics)
            backend = EngineBackend(engines, registry, settings, front_ends)
            context = cls(settings, metrics, registry, RemoteRepository(backend), None, engines=backend)  # type: ignore[arg-type]
        context.plane = DataPlane(registry, settings, metrics, lambda: context.draining, context.engines)
        return context

    async def start_models(self) -> None:
        """Load the bundles here (one process), or follow the engines (a front-end)."""
        if self.engines is not None:
            await self.engines.start()
            return
        self.loader = asyncio.create_task(self.registry.load_all(self.registry.discover()))
        self.loader.add_done_callback(_log_load_failure)
        self.repository.start(self.loader)  # polls model_dir when FUSIONSERVE_MODEL_POLL_S > 0

    async def stop_models(self) -> None:
        """After the drain: stop following the engines, or stop loading and drain the batchers here."""
        if self.engines is not None:
            await self.engines.close()
            return
        self.loader.cancel()
        await self.repository.stop()
        await self.registry.stop()


def _log_load_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("model loading crashed", exc_info=task.exception())
