"""The repository API on a front-end (multi-process mode): Triton's index / load / unload, run by the engines
that own the models (service/engine/server.py), with ModelRepository's interface for api/repository.py."""

from __future__ import annotations

from dataclasses import dataclass

from service.frontend.remote.backend import EngineBackend


@dataclass
class FailedVersion:
    version: str
    reason: str


class RemoteRepository:
    def __init__(self, engines: EngineBackend):
        self.engines, self.settings = engines, engines.settings

    def start(self, initial_load=None) -> None:
        """Nothing runs here: the engines poll FUSIONSERVE_MODEL_DIR themselves."""

    async def stop(self) -> None:
        """Nothing to stop (see start)."""

    async def index(self, ready_only: bool = False) -> list[dict]:
        return (await self.engines.repository("index", None, ready_only))["rows"]

    async def load(self, name: str) -> list[FailedVersion]:
        reply = await self.engines.repository("load", name)
        return [FailedVersion(version, reason) for version, reason in reply["failed"]]

    async def unload(self, name: str) -> None:
        await self.engines.repository("unload", name)
