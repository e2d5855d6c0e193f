"""What the engine serves, as the front-ends see it (docs/architecture.md "Processes").

The engine owns the registry (loading, golden replay, warm-up, live reload); it sends a `snapshot` of it with
every heartbeat. Each front-end keeps a `FollowerTable`: the same ModelEntry / VersionState picture,
with a light bundle per served version (manifest and tokenizer: what decoding, metadata and the answer's
labels need) and no onnxruntime sessions. A version the engine has ready serves here once its light bundle is
read; one the engine retired or lost leaves here at the next heartbeat, so a reload (poll or repository
API) reaches every front-end within one heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from service import preprocess
from service.bundle_files import read_valid_manifest, verify_files
from service.errors import BundleError
from service.manifest import Manifest, manifest_digest
from service.models import ModelEntry, ModelTable, VersionState
from service.settings import Settings

log = logging.getLogger("fusionserve.frontend")
SERVED = ("ready", "draining")  # the engine runs these; a front-end needs their manifests
RANK = {"ready": 0, "draining": 1, "loading": 2, "failed": 3}


def merge(views: list[dict]) -> dict:
    """Several engines' snapshots as one: a version's best status on any engine (ready > draining > loading >
    failed), loading done when every engine's is, a model unloaded when every engine unloaded it."""
    merged: dict = {"loading_done": all(v["loading_done"] for v in views), "models": {},
                    "unloaded": sorted(set.intersection(*(set(v["unloaded"]) for v in views)))}  # fmt: skip
    for view in views:
        for name, seen in view["models"].items():
            model = merged["models"].setdefault(name, {"required": False, "versions": {}})
            model["required"] = model["required"] or seen["required"]
            for version, fields in seen["versions"].items():
                known = model["versions"].get(version)
                if known is None or RANK[fields["status"]] < RANK[known["status"]]:
                    model["versions"][version] = fields
    return merged


@dataclass
class LightBundle:
    """A served version's bundle as a front-end holds it (service/models.py BundleView): no sessions."""

    manifest: Manifest
    directory: Path
    tokenizer: object | None
    provider: str
    manifest_sha256: str  # checked equal to the engine's when read


def light_bundle(settings: Settings, model: str, version: str, fields: dict) -> LightBundle:
    """A served version's manifest and tokenizer, read from the shared model directory (blocking) and checked to
    be what the engine verified: the manifest's digest against the engine's, the tokenizer's sha256 against the
    manifest (as the engine checks every file), so a file changed after the engine loaded is refused here."""
    directory = settings.model_dir / model / version
    manifest = read_valid_manifest(directory)
    digest = manifest_digest(manifest)
    if digest != fields.get("manifest_sha256"):  # the engine's LoadedBundle.manifest_sha256
        raise BundleError("manifest.json is not the one the engine verified (it changed after the engine loaded)")
    tokenizer = None
    if manifest.encoders.text is not None:
        spec = manifest.encoders.text.preprocess
        only_tokenizer = {spec.tokenizer_file: manifest.files[spec.tokenizer_file]}
        verify_files(manifest.model_copy(update={"files": only_tokenizer}), directory)  # the engine's own check
        tokenizer = preprocess.load_tokenizer(directory / spec.tokenizer_file, spec)
    return LightBundle(manifest, directory, tokenizer, fields.get("provider") or "unknown", digest)


class FollowerTable(ModelTable):
    """A front-end's model table: the engines' last snapshot, with light bundles for the versions they serve."""

    def __init__(self, settings: Settings):
        super().__init__()
        self.settings = settings
        self.engine_up = False  # connected and answering heartbeats (service/frontend/remote/backend.py)
        self.unreadable: dict[tuple[str, str], str] = {}  # versions this process failed to read: why (no retry)

    def all_ready(self) -> bool:
        return self.engine_up and super().all_ready()

    async def follow(self, view: dict) -> None:
        """Bring this registry to the engine's `view` (a snapshot); light bundles are read in a thread."""
        self.unloaded = set(view["unloaded"])
        for name in [n for n in self.models if n not in view["models"]]:
            del self.models[name]
        for name, seen in view["models"].items():
            entry = self.models.setdefault(name, ModelEntry(name))
            entry.required = seen["required"]
            for version in [v for v in entry.versions if v not in seen["versions"]]:
                del entry.versions[version]
            for version, fields in seen["versions"].items():
                await self._follow_version(entry, version, fields)
        self.loading_done = view["loading_done"]

    async def _follow_version(self, entry: ModelEntry, version: str, fields: dict) -> None:
        state = entry.versions.setdefault(version, VersionState(version))
        state.reason, state.load_seconds = fields["reason"], fields["load_seconds"]
        state.golden_max_error = fields["golden_max_error"]
        if fields["status"] not in SERVED:
            state.status, state.bundle = fields["status"], None
            return
        if (why := self.unreadable.get((entry.name, version))) is not None:  # versions are immutable: once is enough
            state.status, state.reason = "failed", why
            return
        if state.bundle is None:
            try:
                state.bundle = await asyncio.to_thread(light_bundle, self.settings, entry.name, version, fields)
            except Exception as error:  # noqa: BLE001 — the engine serves it, but this process cannot read it
                state.status = "failed"
                state.reason = self.unreadable[(entry.name, version)] = f"front-end cannot read the bundle: {error}"
                log.error("model %s version %s: %s", entry.name, version, state.reason)
                return
        state.status = fields["status"]

    def engine_lost(self) -> None:
        """The engine process is gone: nothing serves until a new one reports its versions ready."""
        self.engine_up = False
        for entry in self.models.values():
            for state in entry.versions.values():
                if state.status in SERVED:
                    state.status, state.reason = "loading", "the engine process restarts"
