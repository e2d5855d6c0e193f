"""The table of models and versions a process serves, as every process sees it: the engine's registry
(service/engine/registry.py) loads into it, a front-end's follower (service/frontend/remote/follower.py) mirrors
the engine's. Plain state and lookups, no onnxruntime: the data plane and the protocols read models only here.

    state = table.get("tridigits")          # the newest ready version; NotFound / NotReady otherwise
    state.bundle.manifest.labels            # what a protocol needs: labels, dim, modalities, preprocessing
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from service.errors import NotFound, NotReady
from service.manifest import Manifest

Fingerprint = tuple[tuple[str, int, int], ...]


class BundleView(Protocol):
    """What a served version's bundle shows outside the engine: its manifest, its tokenizer, where it is."""

    manifest: Manifest
    directory: Path
    tokenizer: object | None
    provider: str
    manifest_sha256: str


@dataclass
class VersionState:
    version: str
    status: str = "loading"  # loading | ready | failed | draining (retired: admitted requests finishing)
    reason: str | None = None
    bundle: BundleView | None = None
    pipeline: Any = None  # the engine's Pipeline (service/engine/pipeline.py); None outside the engine
    load_seconds: float | None = None
    golden_max_error: float | None = None
    fingerprint: Fingerprint | None = None  # of the files the last load attempt read
    in_flight: int = 0  # admitted requests (DataPlane.admit holds one each)
    idle: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    retiring: asyncio.Task | None = field(default=None, repr=False)

    def hold(self) -> Hold:
        """One admitted request: a retired version stops its batchers only once none is held."""
        return Hold(self)


class Hold:
    """VersionState.hold's context manager (a class: entered for every call an engine runs)."""

    __slots__ = ("state",)

    def __init__(self, state: VersionState):
        self.state = state

    def __enter__(self) -> VersionState:
        self.state.in_flight += 1
        self.state.idle.clear()
        return self.state

    def __exit__(self, *exc) -> None:
        self.state.in_flight -= 1
        if not self.state.in_flight:
            self.state.idle.set()


@dataclass
class ModelEntry:
    name: str
    versions: dict[str, VersionState] = field(default_factory=dict)
    # counted by /readyz: configured or found at start-up, or ready once since; a model that appears
    # later does not take a serving pod out of rotation while it loads (or if it never loads)
    required: bool = True

    def ready_versions(self) -> list[VersionState]:
        ready = [v for v in self.versions.values() if v.status == "ready"]
        return sorted(ready, key=lambda v: int(v.version), reverse=True)


class ModelTable:
    """Models by name, each with its versions; the lookups every request makes."""

    def __init__(self) -> None:
        self.models: dict[str, ModelEntry] = {}
        self.unloaded: set[str] = set()  # unloaded on request: 404 until loaded again
        self.loading_done = False

    def entry(self, name: str) -> ModelEntry:
        if name in self.unloaded:
            raise NotFound(f"model {name!r} was unloaded (POST /v2/repository/models/{name}/load)", field="model")
        if name not in self.models:
            raise NotFound(f"model {name!r} not found; served models: {sorted(self.models)}", field="model")
        return self.models[name]

    def get(self, name: str, version: str | None = None) -> VersionState:
        entry = self.entry(name)
        if version is None:
            ready = entry.ready_versions()
            if not ready:
                raise NotReady(f"model {name!r} has no ready version yet", field="model")
            return ready[0]
        state = entry.versions.get(version)
        if state is None or state.status in ("failed", "draining"):
            why = f" ({state.reason})" if state else ""
            raise NotFound(f"model {name!r} has no servable version {version!r}{why}", field="version")
        if state.status != "ready":
            raise NotReady(f"model {name!r} version {version!r} is still loading", field="version")
        return state

    def all_ready(self) -> bool:
        required = [e for e in self.models.values() if e.required]
        return self.loading_done and bool(required) and all(e.ready_versions() for e in required)
