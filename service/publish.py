"""Publishing a bundle version: immutable numbers, a hidden staging directory, one rename.

Shared by `fusionserve optimize` and the training export (docs/training.md, "Versions are immutable"). A version is
written and verified under `<model_dir>/.<tag>-<version>-<pid>.tmp/<name>/<version>/` (a dot name: the
server's scan ignores it; `<name>/<version>` because the loader insists the manifest matches its directory),
then renamed into place. A rename on one filesystem is atomic, so a polling server sees the whole version or
none of it. An existing version is replaced only when asked to (`overwrite`). A failed run removes its staging
at once; what a killed one left is cleared by the next publish and the server's scan (remove_stale_staging).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service.manifest import is_version_name


class VersionExists(Exception):
    """The version is already published and overwriting it was not asked for."""


def version_numbers(model_dir: Path) -> list[int]:
    """The published version numbers of one model directory (none when it does not exist)."""
    try:
        return [int(p.name) for p in Path(model_dir).iterdir() if p.is_dir() and is_version_name(p.name)]
    except OSError:
        return []


def next_version(*model_dirs: Path) -> str:
    """One more than the newest version in any of `model_dirs` (a model and its -int8 sibling share numbers)."""
    return str(max((n for d in model_dirs for n in version_numbers(d)), default=0) + 1)


def valid_version(version: str) -> str:
    if not is_version_name(version) or int(version) < 1:
        raise ValueError(f"a version is a positive integer (a directory name such as 3), got {version!r}")
    return str(int(version))  # "03" would sort as 3 but be a second directory


def refuse_existing(target: Path, overwrite: bool) -> None:
    if target.exists() and not overwrite:
        raise VersionExists(
            f"{target} is already published and versions are immutable: omit --version to publish the next "
            f"free number, or pass --overwrite to replace it (a server already serving it keeps the old files)"
        )


# `.<tag>-<version>-<pid>.tmp`: a staging directory (tag export, optimize) or a version renamed aside (replaced)
LEFTOVER = re.compile(r"^\.(?P<tag>[a-z0-9]+)-(?P<version>[0-9]+)-(?P<pid>[0-9]+)\.tmp$")
STALE_AFTER_S = 600.0  # untouched this long and its process gone: a run that was killed (SIGKILL, OOM, power)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _untouched_s(directory: Path) -> float:
    """Seconds since anything under `directory` last changed (a run still writing keeps it small)."""
    times = [directory.stat().st_mtime, *(p.stat().st_mtime for p in directory.rglob("*"))]
    return time.time() - max(times)


def remove_stale_staging(model_dir: Path) -> list[str]:
    """Clear what killed exports and publishes left in `model_dir`: their staging directories are removed, and a
    version renamed aside for an overwrite goes back into place if nothing replaced it. A leftover is stale once
    its process is gone and nothing in it changed for STALE_AFTER_S (another host's run sharing the volume may
    have a pid unknown here, so age decides too). Returns the names it cleared; errors leave things as they are."""
    cleared = []
    with contextlib.suppress(OSError):
        for path in Path(model_dir).iterdir():
            match = LEFTOVER.match(path.name)
            if match is None or not path.is_dir() or os.getpid() == int(match["pid"]):
                continue
            try:
                if _alive(int(match["pid"])) or _untouched_s(path) < STALE_AFTER_S:
                    continue
                restore = path.parent / match["version"]
                if match["tag"] == "replaced" and not restore.exists():
                    os.rename(path, restore)
                else:
                    shutil.rmtree(path)
                cleared.append(path.name)
            except OSError:  # removed meanwhile, or a read-only volume: nothing to do here
                continue
    return cleared


@contextmanager
def staged_version(model_dir: Path, name: str, version: str, tag: str) -> Iterator[Path]:
    """A fresh `<name>/<version>/` to write into, under a hidden sibling of the versions; removed on exit
    (after `publish` has renamed the version out of it, or when anything failed)."""
    staging = Path(model_dir) / f".{tag}-{version}-{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted run with the same pid left
    remove_stale_staging(model_dir)  # and what killed runs of other processes left
    staged = staging / name / version
    staged.mkdir(parents=True)
    try:
        yield staged
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staged: Path, target: Path, overwrite: bool = False) -> Path:
    """Rename the verified `staged` version to `target`. With `overwrite`, an existing target is first renamed
    aside (hidden) and removed after the swap: between the two renames the version is briefly absent."""
    refuse_existing(target, overwrite)
    replaced = target.parent / f".replaced-{target.name}-{os.getpid()}.tmp"
    if target.exists():
        os.rename(target, replaced)
    try:
        os.rename(staged, target)  # fails when another export took the number in the meantime
    except OSError as error:
        if replaced.exists():
            os.rename(replaced, target)
        raise VersionExists(f"{target}: could not publish ({error.strerror or error}); nothing was changed") from None
    shutil.rmtree(replaced, ignore_errors=True)
    return target
