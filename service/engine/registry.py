"""Which models and versions are served, and why the others are not.

Scans `<model_dir>/<name>/<version>/`, loads every version (newest first) through bundle.load_bundle,
replays its golden examples, warms it up and starts its batchers. A version that fails is recorded with
its reason and never replaces a working one; the default version of a model is the newest ready one.
A version retired while serving (its directory gone, or an unload) takes no new request at once, finishes
the admitted ones, and only then stops its batchers and leaves (service/engine/reload.py decides when).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from pathlib import Path

from service.engine import heap
from service.engine.batcher import DELIVER_CHUNK
from service.engine.bundle import LoadedBundle, load_bundle, max_golden_error
from service.engine.check import golden_results
from service.engine.pipeline import Pipeline
from service.engine.versions import fingerprint, version_directories
from service.engine.warmup import warmup_batches
from service.errors import BundleError
from service.metrics import Metrics
from service.models import ModelEntry, ModelTable, VersionState
from service.publish import remove_stale_staging
from service.settings import Settings

log = logging.getLogger(__name__)
UNLOADED_KEPT = 64  # unloaded versions remembered for their late holders


class Registry(ModelTable):
    """The engine's model table: it loads, verifies, warms up and retires the versions."""

    def __init__(self, settings: Settings, metrics: Metrics, answer_chunk: int | None = DELIVER_CHUNK):
        super().__init__()
        self.settings, self.metrics = settings, metrics
        self.answer_chunk = answer_chunk  # the batchers' (Batcher answer_chunk): None in an engine process
        # why recently unloaded versions stopped: what a request still holding one gets (503), not a 404
        self.unloaded_versions: OrderedDict[tuple[str, str], str] = OrderedDict()

    def scan(self) -> dict[str, list[Path]]:
        root = self.settings.model_dir
        found: dict[str, list[Path]] = {}
        if root.is_dir():
            for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                versions = version_directories(model_dir)
                if versions:
                    found[model_dir.name] = versions
        wanted = self.settings.models
        for name in wanted:
            found.setdefault(name, [])  # configured but absent: never ready
        return {name: dirs for name, dirs in found.items() if not wanted or name in wanted}

    def clear_leftovers(self) -> None:
        """Staging directories of killed exports and publishes (service/publish.py) in every model directory."""
        root = self.settings.model_dir
        for model_dir in (p for p in root.iterdir() if p.is_dir()) if root.is_dir() else ():
            for name in remove_stale_staging(model_dir):
                log.info("removed %s/%s, left by an interrupted export or publish", model_dir.name, name)

    def discover(self) -> dict[str, list[Path]]:
        """Register every model and version as `loading` (cheap, synchronous: /readyz can list them)."""
        self.clear_leftovers()
        found = self.scan()
        for name, directories in found.items():
            entry = self.models.setdefault(name, ModelEntry(name))
            for directory in directories:
                entry.versions[directory.name] = VersionState(directory.name)
        return found

    async def load_all(self, found: dict[str, list[Path]] | None = None) -> None:
        found = self.discover() if found is None else found
        for name, directories in found.items():
            for directory in directories:
                await self.load_version(name, directory, self.models[name].versions[directory.name])
        self.loading_done = True

    async def load_version(self, name: str, directory: Path, state: VersionState) -> None:
        """Load, verify and warm up in a thread; the version serves (and may become the default) only
        once all of that passed. Any failure leaves it `failed` with its reason."""
        started, state.status, state.reason = time.perf_counter(), "loading", None
        self.unloaded_versions.pop((name, state.version), None)  # loaded again: no late holder of the old one
        try:
            state.bundle, state.pipeline = await asyncio.to_thread(self._prepare, directory, state)
        except Exception as error:  # noqa: BLE001 — whatever breaks, this version is not served
            state.status, state.reason, state.bundle, state.pipeline = "failed", _reason(error), None, None
            log.error("model %s version %s not loaded: %s", name, state.version, state.reason)
            return
        await state.pipeline.start()
        heap.freeze()  # what loading made lives as long as the version: out of the collector's walks
        state.load_seconds, state.status = time.perf_counter() - started, "ready"  # the switch: one assignment
        self.models[name].required = True
        self.metrics.model_load_seconds.labels(name, state.version).set(state.load_seconds)
        self.metrics.model_info.labels(name, state.version, state.bundle.provider).set(1)
        log.info(
            "model %s version %s ready on %s in %.2fs (golden max error %.2e)",
            name,
            state.version,
            state.bundle.provider,
            state.load_seconds,
            state.golden_max_error or 0.0,
        )

    def _prepare(self, directory: Path, state: VersionState) -> tuple[LoadedBundle, Pipeline]:
        """Blocking part of a load (runs in a thread): files, sessions, parity, warm-up."""
        state.fingerprint = fingerprint(directory)  # before reading: a copy still going on shows as a change
        bundle = load_bundle(directory, self.settings)
        pipeline = Pipeline(
            bundle.manifest.name, bundle.encoders, bundle.fusion, self.settings, self.metrics, self.answer_chunk
        )
        if bundle.manifest.golden:
            error = max_golden_error(bundle, golden_results(bundle, self.settings))
            state.golden_max_error = error
            if not error <= bundle.manifest.golden_tolerance:  # `not <=` also catches NaN
                raise BundleError(
                    f"golden examples differ from the reference by {error:.3g} "
                    f"(tolerance {bundle.manifest.golden_tolerance:g})"
                )
        for batch in warmup_batches(bundle, self.settings):
            pipeline.run_direct(batch)
        return bundle, pipeline

    def retire(self, name: str, state: VersionState, reason: str) -> asyncio.Task | None:
        """Take `state` out of service now: new requests go to the newest other ready version (or 404 for
        this one); a running version is drained and unloaded in the background (the returned task)."""
        entry = self.models[name]
        if state.status not in ("ready", "draining"):  # loading (pending) or failed: nothing runs
            del entry.versions[state.version]
            self._forget_if_empty(entry)
            return None
        if state.retiring is None:
            state.status, state.reason = "draining", reason
            log.info("model %s version %s retired (%s): draining", name, state.version, reason)
            state.retiring = asyncio.create_task(self._drain_and_unload(entry, state))
        return state.retiring

    async def _drain_and_unload(self, entry: ModelEntry, state: VersionState) -> None:
        if await self._drained(entry, state):
            await state.pipeline.stop()  # nothing is held: its batchers end at once
        why = f"model {entry.name!r} version {state.version!r} was unloaded ({state.reason}) while this request held it"
        await state.pipeline.close(why)
        self.unloaded_versions[(entry.name, state.version)] = why
        self.unloaded_versions.move_to_end((entry.name, state.version))
        while len(self.unloaded_versions) > UNLOADED_KEPT:
            self.unloaded_versions.popitem(last=False)
        if entry.versions.get(state.version) is state:
            del entry.versions[state.version]
        with contextlib.suppress(KeyError):  # the gauges forget the version (0 first: multiprocess files keep it)
            self.metrics.model_info.labels(entry.name, state.version, state.bundle.provider).set(0)
            self.metrics.model_info.remove(entry.name, state.version, state.bundle.provider)
            self.metrics.model_load_seconds.remove(entry.name, state.version)
        state.bundle = state.bundle.without_sessions()  # a request still holding it reads the manifest only
        self._forget_if_empty(entry)
        heap.collect_retired()
        log.info("model %s version %s unloaded", entry.name, state.version)

    async def _drained(self, entry: ModelEntry, state: VersionState) -> bool:
        """Whether every admitted request let go of `state` within the unload's draining deadline."""
        drain_s = self.settings.unload_drain_seconds()
        try:
            async with asyncio.timeout(drain_s):
                while state.in_flight:  # admitted requests finish on this version's batchers
                    await state.idle.wait()
            return True
        except TimeoutError:
            log.warning(
                "model %s version %s: %d request(s) still hold it after %gs (FUSIONSERVE_UNLOAD_DRAIN_S); "
                "stopping it anyway: they get 503",
                entry.name,
                state.version,
                state.in_flight,
                drain_s,
            )
            return False

    def _forget_if_empty(self, entry: ModelEntry) -> None:
        if not entry.versions and entry.name not in self.settings.models and self.models.get(entry.name) is entry:
            del self.models[entry.name]

    async def stop(self) -> None:
        """Shutdown: every running version (draining ones too) finishes its queued items and stops."""
        for entry in list(self.models.values()):
            for state in list(entry.versions.values()):
                if state.retiring is not None:
                    state.retiring.cancel()
                if state.status in ("ready", "draining"):
                    await state.pipeline.stop()
        heap.thaw()


def _reason(error: Exception) -> str:
    return str(error) if isinstance(error, BundleError) else f"unexpected error: {error!r}"
