"""The repository API on a front-end (multi-process mode): Triton's index / load / unload, run by the engines
that own the models (service/engine/server.py), with ModelRepository's interface for api/repository.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Engines(Protocol):
    """What the repository needs of the remote backend (backend.py): its answer from every engine."""

    async def ask_repository(self, action: str, model: str | None, ready_only: bool = False) -> dict: ...


@dataclass
class FailedVersion:
    version: str
    reason: str


class RemoteRepository:
    def __init__(self, engines: Engines):
        self.engines = engines

    async def index(self, ready_only: bool = False) -> list[dict]:
        return (await self.engines.ask_repository("index", None, ready_only))["rows"]

    async def load(self, name: str) -> list[FailedVersion]:
        reply = await self.engines.ask_repository("load", name)
        return [FailedVersion(version, reason) for version, reason in reply["failed"]]

    async def unload(self, name: str) -> None:
        await self.engines.ask_repository("unload", name)
