"""`fusionserve check BUNDLE_DIR`: load one bundle exactly as the server would and replay its golden examples.

The offline trainer calls this as a subprocess after export (training/ may not import the server's
internals), and an ML engineer can run it on any bundle before deploying it.
"""

from __future__ import annotations

import json
from pathlib import Path

from service.engine.bundle import LoadedBundle, golden_items, load_bundle, max_golden_error
from service.engine.pipeline import run_direct
from service.errors import BundleError
from service.settings import Settings


def golden_results(bundle: LoadedBundle, settings: Settings) -> list:
    return run_direct(bundle.encoders, bundle.fusion, golden_items(bundle, settings))


def _segments(segments) -> list[dict]:
    """A video's segments as GoldenSegment's fields, so a trainer can compare them with its own."""
    if segments is None:
        return []
    rows = zip(segments.bounds.tolist(), segments.probabilities.tolist(), segments.fused.tolist(), strict=True)
    return [{"start_s": b[0], "end_s": b[1], "probabilities": p, "fused": f} for b, p, f in rows]


def check_bundle(directory: Path, settings: Settings) -> dict:
    """{"ok", "reason", "golden_max_error", "tolerance", "provider", "outputs": [per golden example]}."""
    report: dict = {"bundle": str(directory), "ok": False, "reason": None, "golden_max_error": None}
    try:
        bundle = load_bundle(directory, settings)
        results = golden_results(bundle, settings) if bundle.manifest.golden else []
    except BundleError as error:
        return report | {"reason": str(error)}
    error = max_golden_error(bundle, results) if bundle.manifest.golden else 0.0
    tolerance = bundle.manifest.golden_tolerance
    report |= {
        "golden_max_error": error,
        "tolerance": tolerance,
        "provider": bundle.provider,
        "outputs": [
            {
                "probabilities": r.probabilities.tolist(),
                "fused": r.fused.tolist(),
                "embeddings": {m: v.tolist() for m, v in r.embeddings.items()},
                "modality_probabilities": {m: v.tolist() for m, v in r.modality_probabilities.items()},
                "segments": _segments(r.segments),
            }
            for r in results
        ],
    }
    if not error <= tolerance:
        return report | {
            "reason": f"golden examples differ from the reference by {error:.3g} (tolerance {tolerance:g})"
        }
    return report | {"ok": True}


def run_check(directory: str, as_json: bool, settings: Settings) -> int:
    report = check_bundle(Path(directory), settings)
    if as_json:
        print(json.dumps(report))
    elif report["ok"]:
        print(
            f"ok: {directory} loads; golden max error {report['golden_max_error']:.3g} "
            f"(tolerance {report['tolerance']:g}) on {report['provider']}"
        )
    else:
        print(f"FAILED: {directory}: {report['reason']}")
    return 0 if report["ok"] else 1
