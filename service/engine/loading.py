"""An engine that dies while loading a version blames that version: a restarted engine skips it.

A bundle can crash onnxruntime natively (a segfault or abort inside InferenceSession, golden replay or
warm-up): no Python error is raised, the process is gone. The supervisor restarts the engine, which would load
the same version and die again, until the supervisor gives up on the whole server (more than 5 deaths in
60 s). So before a version's load starts, the engine writes it to a record in the runtime directory the
supervisor gives it, and removes it once the load has ended either way; a version still in the record when
an engine starts is one that took the previous engine down, and is failed with CRASHED instead of loaded,
while the other models load and serve. The record lives as long as the server's runtime directory: a new
pod (or a new `fusionserve serve`) tries the version again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson

from service.engine.registry import Registry
from service.models import VersionState

log = logging.getLogger("fusionserve.engine")
CRASHED = "crashed the engine while loading"


class LoadingRecord:
    """The versions this engine is loading right now and those that crashed an earlier engine, in one file."""

    def __init__(self, path: Path):
        self.path = path
        self.loading: set[tuple[str, str]] = set()
        self.crashed: set[tuple[str, str]] = set()
        if path.exists():
            previous = orjson.loads(path.read_bytes())
            self.crashed = {tuple(key) for key in previous["loading"] + previous["crashed"]}
            for model, version in sorted(self.crashed):
                log.error("model %s version %s %s: it is skipped until the server restarts", model, version, CRASHED)
        self._write()

    def begin(self, key: tuple[str, str]) -> None:
        self.loading.add(key)
        self._write()

    def end(self, key: tuple[str, str]) -> None:
        self.loading.discard(key)
        self._write()

    def _write(self) -> None:
        # Written whole and renamed: an engine dying mid-write leaves the previous record, never half of one.
        # No fsync: the record must outlive the process, not the machine (the page cache holds it).
        staged = self.path.with_name(self.path.name + ".new")
        staged.write_bytes(orjson.dumps({"loading": sorted(self.loading), "crashed": sorted(self.crashed)}))
        os.replace(staged, self.path)


class GuardedRegistry(Registry):
    """The engine's registry: every load path (start-up, poll, repository load) goes through load_version."""

    def __init__(self, settings, metrics, record: LoadingRecord, **options):
        super().__init__(settings, metrics, **options)
        self.record = record

    async def load_version(self, name: str, directory: Path, state: VersionState) -> None:
        key = (name, state.version)
        if key in self.record.crashed:
            state.status, state.reason, state.bundle, state.pipeline = "failed", CRASHED, None, None
            return
        self.record.begin(key)  # first: an engine killed right after the line below still blames this version
        log.info("model %s version %s: loading", name, state.version)  # the last line before a native crash
        try:
            await super().load_version(name, directory, state)
        finally:
            self.record.end(key)
