"""Live model management: the model directory polled (FUSIONSERVE_MODEL_POLL_S) and Triton's repository
extension (load / unload / index), without a restart and without a failed request.

A version directory is loaded once it looks complete: a new or changed one is loaded when its files have
not changed since the previous poll (a copy still going on shows as a change), verified (sha256, golden
replay) and warmed up in a thread; only then does it serve, and it becomes the default if it is the newest
ready one. A version that fails is retried when its files change, so a half-copied directory loads once the
copy ends, while one that stays bad stays failed (and is not reloaded every poll). A version whose directory
disappears is retired: the default moves to the newest other ready version at once, its admitted requests
finish on its batchers, then it stops and its metrics labels go (Registry.retire).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from service.engine.registry import Registry
from service.engine.versions import fingerprint, version_directories
from service.errors import BadRequest, NotFound
from service.models import ModelEntry, VersionState

log = logging.getLogger(__name__)
TRITON_STATE = {"ready": "READY", "loading": "LOADING", "failed": "UNAVAILABLE", "draining": "UNLOADING"}
SETTLING = "new files: loaded once they stop changing for one poll"


def plain_name(name: str) -> str:
    if name.startswith(".") or "/" in name or "\\" in name:  # ".." would name the directory above
        raise BadRequest(f"model name {name!r} is not a plain directory name", field="model")
    return name


class ModelRepository:
    def __init__(self, registry: Registry):
        self.registry, self.settings = registry, registry.settings
        self._lock = asyncio.Lock()  # one rescan, load or unload at a time
        self._initial_load: asyncio.Task | None = None
        self._poller: asyncio.Task | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self, initial_load: asyncio.Task) -> None:
        """Changes wait for the start-up load; the poller runs when FUSIONSERVE_MODEL_POLL_S > 0."""
        self._initial_load = initial_load
        if self.settings.model_poll_s > 0:
            self._poller = asyncio.create_task(self._poll_forever(self.settings.model_poll_s), name="model-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.wait({self._poller})

    async def _poll_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.poll()
            except Exception:  # one bad rescan must not end polling
                log.exception("rescanning %s failed", self.settings.model_dir)

    async def _settled(self) -> None:
        if self._initial_load is not None:
            await asyncio.wait({self._initial_load})  # done, failed or cancelled: never raises

    # ---- operations --------------------------------------------------------------------------------

    async def poll(self) -> None:
        """One rescan of the whole model directory (the poller's tick)."""
        await self._settled()
        async with self._lock:
            await asyncio.to_thread(self.registry.clear_leftovers)
            found = await asyncio.to_thread(self.registry.scan)
            names = {*found, *self.registry.models} - self.registry.unloaded
            for name in sorted(names):
                await self._sync(name, found.get(name, []), explicit=False)

    async def load(self, name: str) -> list[VersionState]:
        """Scan `name`'s directory now and load what is new (failed versions retried); versions whose
        directory is gone are retired. Returns the versions that failed to load."""
        directory = self._model_directory(name)
        await self._settled()
        while True:
            # an unload still draining is waited for outside the lock: the poll of every other model goes on
            await self._finish_retiring(name)
            async with self._lock:
                if self._retiring(name):  # another unload began meanwhile
                    continue
                versions = await asyncio.to_thread(version_directories, directory)
                if not versions:
                    raise NotFound(f"model {name!r}: no version directory (a number) in {directory}", field="model")
                self.registry.unloaded.discard(name)
                return await self._sync(name, versions, explicit=True)

    async def unload(self, name: str) -> None:
        """Every version of `name` stops taking requests now, drains, and is unloaded; the name 404s until
        loaded again (the poller leaves it alone)."""
        await self._settled()
        async with self._lock:
            entry = self.registry.models.get(name)
            if entry is None and not (self.settings.model_dir / plain_name(name)).is_dir():
                raise NotFound(f"model {name!r} is neither served nor in {self.settings.model_dir}", field="model")
            self.registry.unloaded.add(name)
            if entry is not None:
                entry.required = name in self.settings.models  # configured: /readyz says 503 until reloaded
                for state in list(entry.versions.values()):
                    self.registry.retire(name, state, "unloaded on request")
        await self._finish_retiring(name)

    # ---- one model against its directory -----------------------------------------------------------

    async def _sync(self, name: str, directories: list[Path], *, explicit: bool) -> list[VersionState]:
        entry = self.registry.models.get(name)
        if entry is None:
            entry = self.registry.models[name] = ModelEntry(name, required=name in self.settings.models)
        present = {d.name: d for d in directories}
        for state in list(entry.versions.values()):
            if state.version not in present:
                self.registry.retire(name, state, "its directory is gone")
        failed = []
        for version, directory in present.items():  # newest first
            state = entry.versions.get(version)
            if state is not None and state.status in ("ready", "draining"):
                continue  # a served version is immutable: publish a new version number instead
            if state is None:
                state = entry.versions[version] = VersionState(version, reason=SETTLING)
            if explicit or await self._due(state, directory):
                await self.registry.load_version(name, directory, state)
                if state.status == "failed":
                    failed.append(state)
        return failed

    @staticmethod
    async def _due(state: VersionState, directory: Path) -> bool:
        """Whether a pending or failed version should be loaded on this poll (see the module docstring)."""
        current = await asyncio.to_thread(fingerprint, directory)
        changed, state.fingerprint = current != state.fingerprint, current
        if not changed:
            return state.status == "loading"  # settled for one poll; a failed one stays failed
        if state.status == "failed":
            log.info("version %s changed since it failed: retrying once its files settle", state.version)
            state.status, state.reason = "loading", SETTLING
        return False

    def _retiring(self, name: str) -> list[asyncio.Task]:
        entry = self.registry.models.get(name)
        versions = entry.versions.values() if entry else ()
        return [s.retiring for s in versions if s.retiring is not None and not s.retiring.done()]

    async def _finish_retiring(self, name: str) -> None:
        """Wait for `name`'s retiring versions; each ends within the unload's draining deadline."""
        if tasks := self._retiring(name):
            await asyncio.wait(tasks)

    def _model_directory(self, name: str) -> Path:
        directory = self.settings.model_dir / plain_name(name)
        if self.settings.models and name not in self.settings.models:
            raise NotFound(f"model {name!r} is not served here (FUSIONSERVE_MODELS={self.settings.models})", "model")
        if not directory.is_dir():
            raise NotFound(f"model {name!r}: no directory {directory}", field="model")
        return directory

    # ---- the index ---------------------------------------------------------------------------------

    async def index(self, ready_only: bool = False) -> list[dict]:
        """Triton's repository index: every model version known here or on disk, with state and reason."""
        found = await asyncio.to_thread(self.registry.scan)
        rows = []
        for name in sorted({*found, *self.registry.models}):
            entry = self.registry.models.get(name)
            versions: dict[str, VersionState | None] = dict(entry.versions) if entry else {}  # draining too
            for directory in found.get(name, []):
                versions.setdefault(directory.name, None)
            for version in sorted(versions, key=int, reverse=True):
                rows.append(self._row(name, version, versions[version]))
        return [row for row in rows if row["state"] == "READY"] if ready_only else rows

    def _row(self, name: str, version: str, state: VersionState | None) -> dict:
        if state is None:
            why = "unloaded" if name in self.registry.unloaded else "not loaded"
            return {"name": name, "version": version, "state": "UNAVAILABLE", "reason": why}
        reason = state.reason or ""
        if state.status == "draining":
            reason = f"{reason}; {state.in_flight} request(s) finishing"
        return {"name": name, "version": version, "state": TRITON_STATE[state.status], "reason": reason}
