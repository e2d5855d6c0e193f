"""`fusionserve optimize BUNDLE [--out-version N] [--fp16]`: a new bundle version with optimised encoder graphs
(the command line: optimize_cli.py).

The new version is assembled in a hidden staging directory (service/publish.py), checked there exactly as
the server would load it (sha256, ONNX I/O, golden replay against the torch outputs the source bundle
carries), and only then renamed to `models/<name>/<N>`: a version whose optimised graphs break parity is
never visible to a server.

Per encoder, every pass of graph_passes.PASSES is tried; a candidate is kept only if it runs on both
CPU and CUDA EPs, its embeddings match the plain graph's within the bundle's golden tolerance on the
golden inputs, and it is at least `min_speedup` times as fast at batch 1 and at batch 32 (same session
options as the server; interleaved rounds, fastest round against fastest round).

With `fp16_tolerance` (Plan), the one candidate per encoder is its float16 conversion, judged at that stated
tolerance instead of the bundle's: the new version's manifest carries it as its golden tolerance, so the
server's load-time replay holds the fp16 graphs to exactly what was promised. Its speed is reported, and
required only if `min_speedup` asks (fp16 pays on a GPU; on the CPU EP it is usually slower).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from bundletools import graph_passes
from service.engine.bundle import LoadedBundle, golden_items, load_bundle
from service.engine.check import check_bundle
from service.engine.components import EncoderComponent
from service.engine.runtime import OrtModel
from service.errors import BundleError
from service.manifest import Manifest, sha256_file, write_manifest
from service.publish import VersionExists, next_version, publish, staged_version, valid_version
from service.settings import Settings

# Speed is compared at one item and at a full batch (golden inputs repeated): a fusion can pay at one
# size and cost at the other, and a kept graph must not be slower at either.
TIMING_BATCHES = (1, 32)
TIMING_ROUNDS, TIMING_MIN_S = 9, 0.1  # interleaved rounds, seconds per graph per round (bench/graphs.py: more)


@dataclass(frozen=True)
class Plan:
    """What to try: the fp32 passes at the bundle's own tolerance, or the fp16 conversion at a stated one."""

    min_speedup: float = 1.0
    fp16_tolerance: float | None = None

    def passes(self, modality: str) -> list:
        return [graph_passes.FP16] if self.fp16_tolerance is not None else graph_passes.PASSES[modality]

    def tolerance(self, manifest: Manifest) -> float:
        return manifest.golden_tolerance if self.fp16_tolerance is None else self.fp16_tolerance

    def describe(self, manifest: Manifest) -> str:
        if self.fp16_tolerance is None:
            return f"optimised graphs of version {manifest.version}"
        return f"fp16 encoders of version {manifest.version}, golden tolerance {self.fp16_tolerance:g}"


class OptimizeError(RuntimeError):
    """No version was written (it could not be made, failed its check, or would change nothing);
    `report` says what was tried per encoder when it got that far."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report


def _target_version(model_dir: Path, requested: str | None) -> str:
    try:
        version = valid_version(requested) if requested else next_version(model_dir)
    except ValueError as error:
        raise OptimizeError(f"--out-version: {error}") from None
    if (model_dir / version).exists():
        raise OptimizeError(f"{model_dir / version} already exists")
    return version


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))


def _evaluate(encoder: EncoderComponent, path: Path, payloads: list, settings: Settings) -> dict:
    """Parity (golden inputs batched together and one by one) and speed of `path` against the plain graph."""
    candidate = OrtModel(path, settings)
    if candidate.input_names != encoder.model.input_names or candidate.output_names != encoder.model.output_names:
        return {"reason": f"I/O changed: {candidate.input_names} → {candidate.output_names}"}
    batches = [payloads] + [[p] for p in payloads]
    diff = max(
        _max_diff(encoder.model.run(feeds)[0], candidate.run(feeds)[0])
        for feeds in (encoder.feeds(batch) for batch in batches)
    )
    by_batch = {}
    for size in TIMING_BATCHES:
        feeds = encoder.feeds((payloads * size)[:size])
        seconds = graph_passes.time_interleaved(
            {"plain": lambda f=feeds: encoder.model.run(f), "optimized": lambda f=feeds: candidate.run(f)},
            TIMING_ROUNDS,
            TIMING_MIN_S,
        )
        by_batch[str(size)] = round(graph_passes.best_speedup(seconds["plain"], seconds["optimized"]), 3)
    return {"max_abs_diff": diff, "speedup": min(by_batch.values()), "speedup_by_batch": by_batch}


def _try_pass(name: str, make, encoder: EncoderComponent, payloads: list, work: Path, settings: Settings) -> dict:
    target = work / f"{encoder.modality}-{name.replace(':', '-')}.onnx"
    try:
        fusions = make(encoder.model.path, target)
    except (graph_passes.PassUnavailable, ImportError) as error:  # e.g. sympy missing: the 'optimize' extra
        return {"optimizer": name, "ok": False, "reason": str(error)}
    except Exception as error:  # a pass that cannot handle this graph is one candidate fewer, not a failure
        return {"optimizer": name, "ok": False, "reason": f"pass failed: {error}"}
    result = {"optimizer": name, "ok": False, "fusions": fusions, "path": target}
    result["nodes"] = [
        sum(graph_passes.op_counts(encoder.model.path).values()),
        sum(graph_passes.op_counts(target).values()),
    ]
    foreign = graph_passes.foreign_ops(target)
    if foreign:
        return result | {"reason": f"operators not on both CPU and CUDA EPs: {foreign}"}
    try:
        return result | _evaluate(encoder, target, payloads, settings)
    except Exception as error:  # onnxruntime rejects the graph or fails on the golden inputs
        return result | {"reason": f"onnxruntime: {error}"}


def _judge(result: dict, tolerance: float, min_speedup: float) -> dict:
    if "reason" in result:
        return result
    if not result["max_abs_diff"] <= tolerance:
        return result | {"reason": f"max |diff| {result['max_abs_diff']:.3g} > tolerance {tolerance:g}"}
    if result["speedup"] < min_speedup:
        return result | {"reason": f"speedup {result['speedup']:.2f}x < {min_speedup:g}x"}
    return result | {"ok": True}


def optimize_encoder(
    encoder: EncoderComponent, payloads: list, work: Path, tolerance: float, plan: Plan, settings: Settings
) -> tuple[dict, Path | None]:
    """Try every pass for one encoder → (what was done, for the manifest; the graph to install or None)."""
    if not payloads:
        return {"kept": False, "reason": "no golden example has this modality: parity cannot be proven"}, None
    candidates = [
        _judge(_try_pass(name, make, encoder, payloads, work, settings), tolerance, plan.min_speedup)
        for name, make in plan.passes(encoder.modality)
    ]
    passed = [c for c in candidates if c["ok"]]
    best = max(passed, key=lambda c: c["speedup"], default=None)
    summary = [{k: v for k, v in c.items() if k not in ("path", "ok")} for c in candidates]
    if best is None:
        return {"kept": False, "reason": "no candidate kept parity and speed", "candidates": summary}, None
    kept = {k: best[k] for k in ("optimizer", "fusions", "nodes", "max_abs_diff", "speedup", "speedup_by_batch")}
    return {"kept": True, **kept, "candidates": summary}, best["path"]


def _golden_payloads(bundle: LoadedBundle, settings: Settings) -> dict[str, list]:
    """Each modality's golden inputs after the server's own preprocessing."""
    items = golden_items(bundle, settings)
    return {m: [item.arrays[m] for item in items if m in item.arrays] for m in bundle.manifest.modalities()}


def _new_manifest(manifest: Manifest, staged: Path, version: str, report: dict, plan: Plan) -> Manifest:
    """Same golden examples (torch's outputs: the check proves parity with torch again), new sha256s, the
    plan's tolerance."""
    values = manifest.model_dump()
    values |= {
        "version": version,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "files": {path: sha256_file(staged / path) for path in manifest.files},
        "metrics": {**manifest.metrics, "optimized": report},
        "description": f"{manifest.description} ({plan.describe(manifest)})".strip(),
        "golden_tolerance": plan.tolerance(manifest),
    }
    new = Manifest.model_validate(values)
    write_manifest(new, staged / "manifest.json")
    return new


def _assemble(bundle: LoadedBundle, staged: Path, version: str, settings: Settings, plan: Plan) -> dict:
    manifest, payloads, tolerance = bundle.manifest, _golden_payloads(bundle, settings), plan.tolerance(bundle.manifest)
    report: dict = {"from_version": manifest.version, "min_speedup": plan.min_speedup, "tolerance": tolerance,
                    "precision": "fp32" if plan.fp16_tolerance is None else "fp16", "encoders": {}}  # fmt: skip
    with tempfile.TemporaryDirectory(dir=staged.parent.parent) as work:
        for modality, encoder in bundle.encoders.items():
            done, graph = optimize_encoder(encoder, payloads[modality], Path(work), tolerance, plan, settings)
            if graph is not None:
                shutil.copyfile(graph, staged / encoder.spec.file)
            report["encoders"][modality] = done
    _new_manifest(manifest, staged, version, report, plan)
    return report


def optimize_bundle(source: Path, settings: Settings, out_version: str | None = None, min_speedup: float = 1.0,
                    fp16_tolerance: float | None = None) -> dict:  # fmt: skip
    """Write models/<name>/<N> from `source` (models/<name>/<version>); returns the report.
    Raises OptimizeError, leaving no new directory behind, when anything fails."""
    source = Path(source)
    try:
        import onnx  # noqa: F401  (node counts and operator checks read the graphs with it)
    except ImportError:
        raise OptimizeError("fusionserve optimize needs the 'optimize' extra: pip install '.[optimize]'") from None
    try:
        bundle = load_bundle(source, settings)
    except BundleError as error:
        raise OptimizeError(f"{source} does not load: {error}") from None
    if not bundle.manifest.golden:
        raise OptimizeError(f"{source} has no golden examples: parity with the reference cannot be proven")
    version = _target_version(source.parent, out_version)
    try:
        with staged_version(source.parent, bundle.manifest.name, version, "optimize") as staged:
            shutil.copytree(source, staged, dirs_exist_ok=True)
            report = _assemble(bundle, staged, version, settings, Plan(min_speedup, fp16_tolerance))
            if not any(done["kept"] for done in report["encoders"].values()):
                # a copy of the source under a new number would only make every server reload the same graphs
                raise OptimizeError("no optimised graph kept parity and speed; no version written", report)
            check = check_bundle(staged, settings)
            if not check["ok"]:
                raise OptimizeError(f"optimised version {version} fails the server's check: {check['reason']}", report)
            target = publish(staged, source.parent / version)
    except (BundleError, OSError, VersionExists) as error:  # a golden input preprocessing rejects; a full disk; a race
        raise OptimizeError(str(error)) from None
    return {"ok": True, "bundle": str(target), "golden_max_error": check["golden_max_error"], **report}
