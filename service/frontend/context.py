"""What the app's routes, middleware and lifespan share, typed: one object at `app.state.context` instead of
loose `app.state` attributes (service/frontend/app.py builds it; api/infer.py's `plane_of` reads the data plane).

The backend (service/backend.py) is chosen here, once: one process runs the items on its own pipelines
(LocalBackend); a front-end process of multi-process mode sends them to the engines (RemoteBackend). Nothing
else asks which one it has (docs/architecture.md "One backend interface")."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from service.backend import Backend, Repository
from service.frontend.dataplane import DataPlane
from service.frontend.remote.backend import RemoteBackend
from service.metrics import Metrics
from service.models import ModelTable
from service.settings import Settings


def local_backend(settings: Settings, metrics: Metrics) -> Backend:
    """The one place a front-end module reaches into the engine: a one-process server runs it in this process,
    so only then is onnxruntime imported (a multi-process front-end never imports it)."""
    from service.engine.local import LocalBackend

    return LocalBackend(settings, metrics)


@dataclass
class ServerContext:
    settings: Settings
    metrics: Metrics
    backend: Backend
    plane: DataPlane
    draining: bool = False  # set on SIGTERM (frontend/drain.py): /readyz 503, new requests refused
    grpc_server: Any = None  # grpc.aio.Server when FUSIONSERVE_GRPC_PORT is set (api/v2/grpc_server.py)
    preprocess_pool: ThreadPoolExecutor | None = None
    reuse_port: bool = False  # a supervisor's front-ends share the listening ports (gRPC's among them)

    @classmethod
    def build(cls, settings: Settings, engines: list[str] | None = None, front_ends: int = 1) -> ServerContext:
        """`engines`: the engine endpoints this process is a front-end of; None: one process does everything."""
        metrics = Metrics()
        backend = local_backend(settings, metrics) if engines is None else RemoteBackend(engines, settings, front_ends)
        plane = DataPlane(backend, settings, metrics, lambda: context.draining)  # read once context exists
        context = cls(settings, metrics, backend, plane, reuse_port=engines is not None)
        return context

    @property
    def registry(self) -> ModelTable:
        return self.backend.models

    @property
    def repository(self) -> Repository:
        return self.backend.repository

    async def start_models(self) -> None:
        """Load the bundles here (one process), or follow the engines (a front-end); returns at once."""
        await self.backend.start()

    async def stop_models(self) -> None:
        """After the drain: stop loading and drain the batchers, or stop following the engines."""
        await self.backend.stop()
