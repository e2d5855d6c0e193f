"""A bundle's manifest and files, checked as the engine checks them: shared by the engine (which loads the whole
bundle) and a front-end (which reads only the manifest and the tokenizer), so both refuse the same changed file."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from service.errors import BundleError
from service.manifest import Manifest, read_manifest, sha256_file


def read_valid_manifest(directory: Path) -> Manifest:
    try:
        manifest = read_manifest(directory / "manifest.json")
    except FileNotFoundError:
        raise BundleError("manifest.json is missing") from None
    except (ValidationError, ValueError) as error:
        raise BundleError(f"manifest.json is invalid: {error}") from None
    if (manifest.name, manifest.version) != (directory.parent.name, directory.name):
        raise BundleError(
            f"manifest says {manifest.name}/{manifest.version}, directory is {directory.parent.name}/{directory.name}"
        )
    return manifest


def verify_files(manifest: Manifest, directory: Path) -> None:
    """Every listed file must stay inside the bundle (symlinks resolved) and match its sha256."""
    root = directory.resolve()
    for relative, expected in manifest.files.items():
        path = (directory / relative).resolve()
        if not path.is_relative_to(root):
            raise BundleError(f"{relative} resolves outside the bundle directory")
        if not path.is_file():
            raise BundleError(f"{relative} is missing")
        actual = sha256_file(path)
        if actual != expected.lower():
            raise BundleError(f"{relative}: sha256 mismatch (manifest {expected[:12]}…, file {actual[:12]}…)")
