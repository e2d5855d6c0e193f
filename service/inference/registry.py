"""Which models and versions are served, and why the others are not.

Scans `<model_dir>/<name>/<version>/`, loads every version (newest first) through bundle.load_bundle,
replays its golden examples, warms it up and starts its batchers. A version that fails is recorded with
its reason and never replaces a working one; the default version of a model is the newest ready one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.errors import BundleError, NotFound, NotReady
from service.inference.bundle import LoadedBundle, load_bundle, max_golden_error
from service.inference.check import golden_results
from service.inference.pipeline import Pipeline
from service.inference.prepare import PreparedItem
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class VersionState:
    version: str
    status: str = "loading"  # loading | ready | failed
    reason: str | None = None
    bundle: LoadedBundle | None = None
    pipeline: Pipeline | None = None
    load_seconds: float | None = None
    golden_max_error: float | None = None


@dataclass
class ModelEntry:
    name: str
    versions: dict[str, VersionState] = field(default_factory=dict)

    def ready_versions(self) -> list[VersionState]:
        ready = [v for v in self.versions.values() if v.status == "ready"]
        return sorted(ready, key=lambda v: int(v.version), reverse=True)


def warmup_items(bundle: LoadedBundle) -> list[PreparedItem]:
    """One synthetic item with every modality, shaped like real traffic."""
    encoders, arrays = bundle.manifest.encoders, {}
    if encoders.image:
        size = encoders.image.preprocess.size
        arrays["image"] = np.zeros((3, size, size), np.float32)
    if encoders.text:
        ids = np.asarray(bundle.tokenizer.encode("warm up").ids, np.int64)
        arrays["text"] = (ids, np.ones_like(ids))
    if encoders.audio:
        arrays["audio"] = np.zeros((encoders.audio.preprocess.n_mels, 200), np.float32)
    return [PreparedItem(arrays)]


class Registry:
    def __init__(self, settings: Settings, metrics: Metrics):
        self.settings, self.metrics = settings, metrics
        self.models: dict[str, ModelEntry] = {}
        self.loading_done = False

    def scan(self) -> dict[str, list[Path]]:
        root = self.settings.model_dir
        found: dict[str, list[Path]] = {}
        if root.is_dir():
            for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
                if versions:
                    found[model_dir.name] = sorted(versions, key=lambda p: int(p.name), reverse=True)
        wanted = self.settings.models
        for name in wanted:
            found.setdefault(name, [])  # configured but absent: never ready
        return {name: dirs for name, dirs in found.items() if not wanted or name in wanted}

    def discover(self) -> dict[str, list[Path]]:
        """Register every model and version as `loading` (cheap, synchronous: /readyz can list them)."""
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
                await self._load_version(name, directory, self.models[name].versions[directory.name])
        self.loading_done = True

    async def _load_version(self, name: str, directory: Path, state: VersionState) -> None:
        started = time.perf_counter()
        try:
            state.bundle, state.pipeline = await asyncio.to_thread(self._prepare, directory, state)
        except BundleError as error:
            state.status, state.reason = "failed", str(error)
            log.error("model %s version %s not loaded: %s", name, state.version, error)
            return
        await state.pipeline.start()
        state.load_seconds, state.status = time.perf_counter() - started, "ready"
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
        bundle = load_bundle(directory, self.settings)
        pipeline = Pipeline(bundle.manifest.name, bundle.encoders, bundle.fusion, self.settings, self.metrics)
        if bundle.manifest.golden:
            error = max_golden_error(bundle, golden_results(bundle, self.settings))
            state.golden_max_error = error
            if not error <= bundle.manifest.golden_tolerance:  # `not <=` also catches NaN
                raise BundleError(
                    f"golden examples differ from the reference by {error:.3g} "
                    f"(tolerance {bundle.manifest.golden_tolerance:g})"
                )
        for size in self.settings.warmup_batch_sizes:
            pipeline.run_direct(warmup_items(bundle) * size)
        return bundle, pipeline

    def entry(self, name: str) -> ModelEntry:
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
        if state is None or state.status == "failed":
            why = f" ({state.reason})" if state else ""
            raise NotFound(f"model {name!r} has no servable version {version!r}{why}", field="version")
        if state.status != "ready":
            raise NotReady(f"model {name!r} version {version!r} is still loading", field="version")
        return state

    def all_ready(self) -> bool:
        return self.loading_done and bool(self.models) and all(e.ready_versions() for e in self.models.values())

    async def stop(self) -> None:
        for entry in self.models.values():
            for state in entry.ready_versions():
                await state.pipeline.stop()
