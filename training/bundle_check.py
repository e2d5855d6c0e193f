"""Run an exported bundle offline: training's own onnxruntime runner, and the server's check as a subprocess.

training/ may import only service.manifest, service.preprocess and service.publish (docs/architecture.md,
import rules), so the proof that the *server* reproduces torch goes through `python -m service check BUNDLE
--json` in a separate process — the very loader, preprocessing and pipeline that `make serve` runs, without
training importing them.
Accuracy sweeps over a whole test split use `OrtBundle` here (batched, no HTTP, no queues).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service import manifest as mf
from training.data.features import collate
from training.export_encoders import ort_session


class BundleCheckError(RuntimeError):
    """The server could not load the bundle, or its golden replay failed."""


def server_check(bundle: Path, threads: int = 2) -> dict:
    """`python -m service check BUNDLE --json` on CPU → the report (ok, reason, golden_max_error, outputs)."""
    env = os.environ | {"FUSIONSERVE_PROVIDERS": "cpu", "FUSIONSERVE_INTRA_OP_THREADS": str(threads)}
    command = [sys.executable, "-m", "service", "check", str(bundle), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise BundleCheckError(
            f"`{' '.join(command[1:])}` exited {done.returncode} without a report:\n{done.stderr[-3000:]}"
        ) from None


class OrtBundle:
    """A bundle's encoder and fusion graphs on onnxruntime's CPU provider."""

    def __init__(self, bundle: Path, threads: int = 2):
        self.manifest = mf.read_manifest(bundle / "manifest.json")
        self.specs = {m: getattr(self.manifest.encoders, m) for m in self.manifest.modalities()}
        self.encoders = {m: ort_session(bundle / spec.file, threads) for m, spec in self.specs.items()}
        self.fusion = ort_session(bundle / self.manifest.fusion.file, threads)

    def embed(self, modality: str, arrays: Sequence[tuple[np.ndarray, ...]]) -> np.ndarray:
        """Preprocessed items (service.preprocess output) → embeddings [B, D], padded as the server pads."""
        names = [spec.name for spec in self.specs[modality].inputs]
        feeds = {name: tensor.numpy() for name, tensor in zip(names, collate(modality, arrays), strict=True)}
        return self.encoders[modality].run(None, feeds)[0]

    def fuse(self, embeddings: dict[str, np.ndarray], rows: int) -> np.ndarray:
        """{modality: [B, D]} for the modalities present (absent ones are zeros, present=0) → logits [B, C]."""
        modalities, dim = self.manifest.fusion.modalities, self.manifest.embedding_dim
        zeros = np.zeros((rows, dim), dtype=np.float32)
        feeds = {f"{m}_embedding": embeddings.get(m, zeros).astype(np.float32) for m in modalities}
        feeds["present"] = np.array([[float(m in embeddings) for m in modalities]] * rows, dtype=np.float32)
        return self.fusion.run(["logits"], feeds)[0]


def server_golden_error(bundle: Path, threads: int = 2) -> float:
    """The server's own loader replays the golden examples (`python -m service check`) → max |server − torch|."""
    report = server_check(bundle, threads)
    if report.get("golden_max_error") is None:
        raise BundleCheckError(f"{bundle}: the server cannot load the bundle: {report.get('reason')}")
    return float(report["golden_max_error"])


def write_bundle_manifest(bundle: Path, base: dict, metrics: dict) -> mf.Manifest:
    """Hash every file in the bundle directory (all but manifest.json) and write manifest.json."""
    files = sorted(p.name for p in bundle.iterdir() if p.is_file() and p.name != "manifest.json")
    manifest = mf.Manifest(**base, files={f: mf.sha256_file(bundle / f) for f in files}, metrics=metrics)
    mf.write_manifest(manifest, bundle / "manifest.json")
    return manifest


def verify_bundle_files(bundle: Path) -> None:
    """The written manifest parses and every file it lists matches its sha256 (what the server checks first)."""
    manifest = mf.read_manifest(bundle / "manifest.json")
    bad = [name for name, digest in manifest.files.items() if mf.sha256_file(bundle / name) != digest]
    if bad:
        raise BundleCheckError(f"{bundle}: files changed after the manifest was written: {bad}")
