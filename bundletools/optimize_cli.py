"""The command line of `fusionserve optimize` (service/cli.py): run optimize.py, print what each encoder got."""

from __future__ import annotations

import json
from pathlib import Path

from bundletools.optimize import OptimizeError, optimize_bundle
from service.settings import Settings


def _print_encoders(report: dict) -> None:
    for modality, done in report["encoders"].items():
        if done["kept"]:
            before, after = done["nodes"]
            speed = ", ".join(f"{x:.2f}x at batch {b}" for b, x in done["speedup_by_batch"].items())
            diff = done["max_abs_diff"]
            print(f"{modality}: {done['optimizer']}, {before}→{after} nodes, {speed}, max |diff| {diff:.2g}")
        else:
            reasons = "; ".join(f"{c['optimizer']}: {c['reason']}" for c in done.get("candidates", []))
            print(f"{modality}: kept the plain graph ({reasons or done['reason']})")


def run_optimize(
    bundle: str, out_version: str | None, min_speedup: float, as_json: bool, settings: Settings,
    fp16_tolerance: float | None = None,
) -> int:  # fmt: skip
    try:
        report = optimize_bundle(Path(bundle), settings, out_version, min_speedup, fp16_tolerance)
    except OptimizeError as error:
        if as_json:
            print(json.dumps({"ok": False, "reason": str(error), **(error.report or {})}))
        else:
            if error.report:
                _print_encoders(error.report)
            print(f"FAILED: {error}")
        return 1
    if as_json:
        print(json.dumps(report))
        return 0
    _print_encoders(report)
    print(f"ok: wrote {report['bundle']}; golden max error {report['golden_max_error']:.3g}")
    return 0
