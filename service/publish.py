"""Publishing a bundle version: immutable numbers, a hidden staging directory, one rename.

Shared by `fusionserve optimize` and the training export (docs/model-management.md, "Publishing"). A version is
written and verified under `<model_dir>/.<tag>-<version>-<pid>.tmp/<name>/<version>/` (a dot name: the
server's scan ignores it; `<name>/<version>` because the loader insists the manifest matches its directory),
then renamed into place. A rename on one filesystem is atomic, so a polling server sees the whole version or
none of it. An existing version is replaced only when asked to (`overwrite`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class VersionExists(Exception):
    """The version is already published and overwriting it was not asked for."""


def version_numbers(model_dir: Path) -> list[int]:
    """The published version numbers of one model directory (none when it does not exist)."""
    try:
        return [int(p.name) for p in Path(model_dir).iterdir() if p.is_dir() and p.name.isdigit()]
    except OSError:
        return []


def next_version(*model_dirs: Path) -> str:
    """One more than the newest version in any of `model_dirs` (a model and its -int8 sibling share numbers)."""
    return str(max((n for d in model_dirs for n in version_numbers(d)), default=0) + 1)


def valid_version(version: str) -> str:
    if not version.isdigit() or int(version) < 1:
        raise ValueError(f"a version is a positive integer (a directory name such as 3), got {version!r}")
    return str(int(version))  # "03" would sort as 3 but be a second directory


def refuse_existing(target: Path, overwrite: bool) -> None:
    if target.exists() and not overwrite:
        raise VersionExists(
            f"{target} is already published and versions are immutable: omit --version to publish the next "
            f"free number, or pass --overwrite to replace it (a server already serving it keeps the old files)"
        )


@contextmanager
def staged_version(model_dir: Path, name: str, version: str, tag: str) -> Iterator[Path]:
    """A fresh `<name>/<version>/` to write into, under a hidden sibling of the versions; removed on exit
    (after `publish` has renamed the version out of it, or when anything failed)."""
    staging = Path(model_dir) / f".{tag}-{version}-{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted run with the same pid left
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
