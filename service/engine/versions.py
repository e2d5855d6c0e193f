"""The version directories of a model on disk and their fingerprints (service/engine/registry.py and reload.py
decide from them what to load and what changed); the versions' state is service/models.py's."""

from __future__ import annotations

from pathlib import Path

from service.manifest import is_version_name
from service.models import Fingerprint


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
