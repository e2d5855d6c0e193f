"""What the app's routes, middleware and lifespan share, typed: one object at `app.state.context` instead of
loose `app.state` attributes (service/main.py builds it; api/infer.py's `plane_of` reads the data plane)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from service.dataplane import DataPlane
from service.inference.registry import Registry
from service.inference.reload import ModelRepository
from service.metrics import Metrics
from service.settings import Settings


@dataclass
class ServerContext:
    settings: Settings
    metrics: Metrics
    registry: Registry
    repository: ModelRepository
    plane: DataPlane
    draining: bool = False  # set on SIGTERM (service/drain.py): /readyz 503, new requests refused
    loader: asyncio.Task | None = None  # the start-up load (lifespan)
    grpc_server: Any = None  # grpc.aio.Server when FUSIONSERVE_GRPC_PORT is set (api/v2/grpc_server.py)
    preprocess_pool: ThreadPoolExecutor | None = None

    @classmethod
    def build(cls, settings: Settings) -> ServerContext:
        metrics = Metrics()
        registry = Registry(settings, metrics)
        context = cls(settings, metrics, registry, ModelRepository(registry), plane=None)  # type: ignore[arg-type]
        context.plane = DataPlane(registry, settings, metrics, lambda: context.draining)
        return context
