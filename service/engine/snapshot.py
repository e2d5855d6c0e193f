"""What an engine tells its front-ends it serves (every heartbeat and repository answer): the registry as plain
JSON, which each front-end's follower table mirrors (service/frontend/remote/follower.py)."""

from __future__ import annotations

from service.engine.registry import Registry
from service.models import VersionState


def _version_fields(state: VersionState) -> dict:
    bundle = state.bundle
    return {"status": state.status, "reason": state.reason, "load_seconds": state.load_seconds,
            "golden_max_error": state.golden_max_error, "provider": bundle.provider if bundle else None,
            "manifest_sha256": bundle.manifest_sha256 if bundle else None}  # fmt: skip


def snapshot(registry: Registry) -> dict:
    """The registry as plain JSON: per model and version, what /readyz, /v1/models and V2 metadata say."""
    models = {}
    for entry in registry.models.values():
        versions = {v.version: _version_fields(v) for v in entry.versions.values()}
        models[entry.name] = {"required": entry.required, "versions": versions}
    return {"loading_done": registry.loading_done, "unloaded": sorted(registry.unloaded), "models": models}
