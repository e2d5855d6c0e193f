"""The one interface between the data plane and where items run (docs/architecture.md "One backend interface"),
as vLLM's EngineCoreClient is: the server picks its implementation once, when it is built, and nothing after
that asks which one it has.

    backend = LocalBackend(settings, metrics)          # one process: its own pipelines (engine/local.py)
    backend = RemoteBackend(endpoints, settings, n)    # a front-end: the engine processes (frontend/remote/backend.py)
    await backend.start()
    results = await backend.run(model, version, items, deadline)   # list[ItemResult], or a FusionError
    backend.meter(model, version)                                  # the door's view of the version's load
    await backend.stop()

An engine process serves its front-ends' calls through its own LocalBackend (service/engine/server.py), so the
run → hold → pipeline path is written once.
"""

from __future__ import annotations

from typing import Protocol

from service.admission import DrainMeter
from service.items import ItemResult, PreparedItem
from service.models import ModelTable


class FailedLoad(Protocol):
    version: str
    reason: str


class Repository(Protocol):
    """Triton's model repository extension: index, load and unload (service/frontend/api/repository.py)."""

    async def index(self, ready_only: bool = False) -> list[dict]: ...

    async def load(self, name: str) -> list[FailedLoad]: ...

    async def unload(self, name: str) -> None: ...


class Backend(Protocol):
    models: ModelTable  # what is served: the data plane resolves every request against it
    repository: Repository

    def meter(self, model: str, version: str) -> DrainMeter:
        """The version's requests in flight and drain rate, as admission judges them (service/admission.py)."""

    async def run(self, model: str, version: str, items: list[PreparedItem], deadline: float) -> list[ItemResult]:
        """Every item's result, in order; a FusionError (404 / 503 / 504 / 429…) as a single process raises it."""

    async def start(self) -> None:
        """Load the bundles (local) or start following the engines (remote); returns at once."""

    async def stop(self) -> None:
        """After the drain: stop loading and drain the batchers, or stop following."""
