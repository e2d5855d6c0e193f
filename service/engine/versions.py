"""What the registry knows of each model and version (service/engine/registry.py loads and retires them):
its state, the admitted requests holding it, and the files it was loaded from."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from service.engine.bundle import LoadedBundle
from service.engine.pipeline import Pipeline
from service.manifest import is_version_name

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(directory: Path) -> Fingerprint:
    """Each file's path, size and mtime: it changes while a directory is still being copied in."""
    found = []
    try:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                stat = path.stat()
                found.append((path.relative_to(directory).as_posix(), stat.st_size, stat.st_mtime_ns))
    except OSError:  # removed while we looked: whatever was there has changed
        return ()
    return tuple(found)


def version_directories(model_dir: Path) -> list[Path]:
    """The version directories (ASCII decimal names) of one model, newest first."""
    try:
        versions = [p for p in model_dir.iterdir() if p.is_dir() and is_version_name(p.name)]
    except OSError:  # not there (any more)
        return []
    return sorted(versions, key=lambda p: int(p.name), reverse=True)


@dataclass
class VersionState:
    version: str
    status: str = "loading"  # loading | ready | failed | draining (retired: admitted requests finishing)
    reason: str | None = None
    bundle: LoadedBundle | None = None
    pipeline: Pipeline | None = None
    load_seconds: float | None = None
    golden_max_error: float | None = None
    fingerprint: Fingerprint | None = None  # of the files the last load attempt read
    in_flight: int = 0  # admitted requests (DataPlane.admit holds one each)
    idle: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    retiring: asyncio.Task | None = field(default=None, repr=False)

    @contextlib.contextmanager
    def hold(self):
        """One admitted request: a retired version stops its batchers only once none is held."""
        self.in_flight += 1
        self.idle.clear()
        try:
            yield self
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()


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
